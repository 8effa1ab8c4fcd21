export * from './values.js';
export { GgufWriter, valueBytes, type GgufWriterOptions } from './writer.js';
export { readGguf, readTensorBytes, kvValue, type GgufFile, type ReadGgufOptions } from './reader.js';
