// ONNX message types as bake uses them, and the protobuf codec behind them. Field names keep the spec's
// snake_case (keepCase) so code reads like the ONNX docs. int64 fields decode as Long or number.
import protobuf from 'protobufjs';
import { InputError } from '../../util/errors.js';
import { ONNX_PROTO } from './schema.js';

export type Int64 = number | { toNumber(): number };

export interface StringStringEntry { key: string; value: string }
export interface Dimension { dim_value?: Int64; dim_param?: string; denotation?: string }
export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: { dim?: Dimension[] } };
  sequence_type?: { elem_type?: TypeProto };
  map_type?: unknown;
  optional_type?: { elem_type?: TypeProto };
  sparse_tensor_type?: unknown;
  denotation?: string;
}
export interface ValueInfo { name: string; type?: TypeProto; doc_string?: string }
export interface TensorProto {
  dims?: Int64[];
  data_type?: number;
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: Int64[];
  double_data?: number[];
  uint64_data?: Int64[];
  string_data?: Uint8Array[];
  external_data?: StringStringEntry[];
  data_location?: number;
  segment?: unknown;
  metadata_props?: StringStringEntry[];
}
export interface AttributeProto {
  name: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  ref_attr_name?: string;
  doc_string?: string;
  [k: string]: unknown;
}
export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
  [k: string]: unknown;
}
export interface GraphProto {
  node: NodeProto[];
  name?: string;
  initializer: TensorProto[];
  sparse_initializer?: unknown[];
  input: ValueInfo[];
  output: ValueInfo[];
  value_info: ValueInfo[];
  doc_string?: string;
  [k: string]: unknown;
}
export interface OperatorSetId { domain?: string; version: Int64 }
export interface FunctionProto { name: string; node: NodeProto[]; domain?: string; [k: string]: unknown }
export interface ModelProto {
  ir_version?: Int64;
  opset_import: OperatorSetId[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: Int64;
  doc_string?: string;
  graph: GraphProto;
  metadata_props?: StringStringEntry[];
  functions?: FunctionProto[];
  [k: string]: unknown;
}

/** TensorProto.DataType values. */
export const DataType = {
  UNDEFINED: 0, FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16,
} as const;

/** AttributeProto.AttributeType values. */
export const AttributeType = {
  FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8, TENSORS: 9, GRAPHS: 10,
} as const;

let modelType: protobuf.Type | undefined;
function modelMessage(): protobuf.Type {
  modelType ??= protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');
  return modelType;
}

export function toNumber(v: Int64 | undefined | null): number {
  if (v === undefined || v === null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

/** Decodes ModelProto bytes; malformed bytes give an InputError naming `file`. */
export function decodeModel(bytes: Uint8Array, file = '<memory>'): ModelProto {
  let msg: protobuf.Message;
  try {
    msg = modelMessage().decode(bytes);
  } catch (err) {
    throw new InputError(`${file} is not a valid ONNX model: ${(err as Error).message}`, {
      file, expected: 'an ONNX ModelProto (protobuf)', hint: 'check the file was downloaded whole and is an .onnx model', cause: err,
    });
  }
  const model = msg as unknown as ModelProto;
  if (!model.graph || !Array.isArray(model.graph.node)) {
    throw new InputError(`${file} has no graph`, { file, expected: 'an ONNX ModelProto with a graph', hint: 'the file may be a different protobuf message' });
  }
  return model;
}

export function encodeModel(model: ModelProto): Uint8Array {
  const type = modelMessage();
  return type.encode(model as unknown as protobuf.Message).finish();
}
