// Tensor values in and out of TensorProto: raw_data and the typed fields, float16 conversion.
import { InputError } from '../../util/errors.js';
import { DataType, toNumber, type TensorProto } from './proto.js';
import { bf16ToFp32Row, fp16ToFp32Row, fp32ToFp16 as floatToHalf } from '../fp16.js';

export type TensorData = Float32Array | Uint8Array | Int8Array | Int32Array | BigInt64Array | Uint16Array | Float64Array;

export const BYTES_PER_ELEMENT: Record<number, number> = {
  [DataType.FLOAT]: 4, [DataType.UINT8]: 1, [DataType.INT8]: 1, [DataType.UINT16]: 2, [DataType.INT16]: 2,
  [DataType.INT32]: 4, [DataType.INT64]: 8, [DataType.BOOL]: 1, [DataType.FLOAT16]: 2, [DataType.DOUBLE]: 8,
  [DataType.UINT32]: 4, [DataType.UINT64]: 8, [DataType.BFLOAT16]: 2,
};

export function tensorDims(t: TensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d));
}

export function elementCount(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Bytes held by a tensor's data, wherever it sits (raw or typed field); used for size estimates. */
export function tensorByteLength(t: TensorProto): number {
  if (t.raw_data && t.raw_data.length) return t.raw_data.length;
  const n = elementCount(tensorDims(t));
  return n * (BYTES_PER_ELEMENT[t.data_type ?? 0] ?? 0);
}

// float16 <-> float32, round to nearest even (the IEEE default that numpy, onnx and ggml use): one
// implementation for every format.
export { fp32ToFp16 as floatToHalf, fp16ToFp32 as halfToFloat } from '../fp16.js';

function rawView(t: TensorProto): Uint8Array | undefined {
  return t.raw_data && t.raw_data.length ? t.raw_data : undefined;
}

/** Float values of a float-like tensor (FLOAT, FLOAT16, DOUBLE, BFLOAT16) as float32 (may view the tensor's bytes: read only). */
export function tensorToFloat32(t: TensorProto, where = t.name ?? '<tensor>'): Float32Array {
  const n = elementCount(tensorDims(t));
  const raw = rawView(t);
  const type = t.data_type ?? 0;
  const check = (len: number) => {
    if (len !== n) throw new InputError(`tensor ${where} holds ${len} values but its dims say ${n}`, { expected: 'data matching the tensor dims', hint: 'the model file is corrupt' });
  };
  if (type === DataType.FLOAT) {
    if (raw) {
      check(raw.length / 4);
      // Aligned bytes are viewed in place: no copy of a multi-GB weight (callers only read it).
      if (raw.byteOffset % 4 === 0) return new Float32Array(raw.buffer, raw.byteOffset, n);
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(raw);
      return out;
    }
    check(t.float_data?.length ?? 0);
    return Float32Array.from(t.float_data ?? []);
  }
  if (type === DataType.FLOAT16 || type === DataType.BFLOAT16) {
    let bits: Uint16Array;
    if (raw) {
      check(raw.length / 2);
      bits = new Uint16Array(n);
      new Uint8Array(bits.buffer).set(raw);
    } else {
      check(t.int32_data?.length ?? 0);
      bits = Uint16Array.from(t.int32_data ?? []);
    }
    const out = new Float32Array(n);
    if (type === DataType.FLOAT16) fp16ToFp32Row(bits, out);
    else bf16ToFp32Row(bits, out);
    return out;
  }
  if (type === DataType.DOUBLE) {
    if (raw) {
      check(raw.length / 8);
      const d = new Float64Array(n);
      new Uint8Array(d.buffer).set(raw);
      return Float32Array.from(d);
    }
    check(t.double_data?.length ?? 0);
    return Float32Array.from(t.double_data ?? []);
  }
  throw new InputError(`tensor ${where} has data type ${type}, not a float type`, { expected: 'FLOAT, FLOAT16, BFLOAT16 or DOUBLE' });
}

/** Integer values of an INT64/INT32 tensor as numbers (shapes, axes, indices). */
export function tensorToInts(t: TensorProto): number[] {
  const raw = rawView(t);
  const type = t.data_type ?? 0;
  if (type === DataType.INT64) {
    if (raw) {
      const a = new BigInt64Array(raw.length / 8);
      new Uint8Array(a.buffer).set(raw);
      return Array.from(a, Number);
    }
    return (t.int64_data ?? []).map(toNumber);
  }
  if (type === DataType.INT32 || type === DataType.INT8 || type === DataType.UINT8 || type === DataType.BOOL) {
    if (raw) {
      if (type === DataType.INT32) { const a = new Int32Array(raw.length / 4); new Uint8Array(a.buffer).set(raw); return Array.from(a); }
      if (type === DataType.INT8) return Array.from(new Int8Array(raw.buffer, raw.byteOffset, raw.length));
      return Array.from(raw);
    }
    return [...(t.int32_data ?? [])];
  }
  throw new InputError(`tensor ${t.name ?? ''} has data type ${type}, not an integer type`);
}

const TYPE_OF_ARRAY = new Map<unknown, number>([
  [Float32Array, DataType.FLOAT], [Uint8Array, DataType.UINT8], [Int8Array, DataType.INT8], [Int32Array, DataType.INT32],
  [BigInt64Array, DataType.INT64], [Float64Array, DataType.DOUBLE],
]);

/** A TensorProto with raw_data viewing a typed array's bytes (no copy); Uint16Array is taken as float16 bits. */
export function makeTensor(name: string, dims: number[], data: TensorData, dataType?: number): TensorProto {
  const type = dataType ?? (data instanceof Uint16Array ? DataType.FLOAT16 : TYPE_OF_ARRAY.get(data.constructor));
  if (type === undefined) throw new TypeError(`makeTensor: unsupported array ${data.constructor.name}`);
  if (elementCount(dims) !== data.length) throw new TypeError(`makeTensor ${name}: dims ${dims} do not match ${data.length} values`);
  return { name, dims, data_type: type, raw_data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
}

export function float32ToHalfBits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]!);
  return out;
}
