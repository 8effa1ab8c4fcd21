// ONNX model files: read, write (with external data), tensors and graph walking. No quantization policy here.
export * from './proto.js';
export * from './tensor.js';
export * from './graph.js';
export { readOnnx, writeOnnx, externalDataLocations, onnxDiskSize, modelTensorBytes, PROTOBUF_LIMIT, type WriteOnnxOptions } from './io.js';
