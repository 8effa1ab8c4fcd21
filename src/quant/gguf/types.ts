// The one table of GGUF tensor types. Each row says how a type is laid out (ggml type id, block size,
// bytes per block) and how to convert whole rows to and from float32. The converter, the mix rules,
// size estimates, the GGUF writer/reader and the tests all read this table; adding a type is adding a row.
import { bf16ToFp32Row, fp16ToFp32Row } from '../../formats/fp16.js';
import { rowQuantizer, type KernelName, type RowQuantizer } from './kernels/wasm.js';
import * as kquants from './kquants.js';
import * as legacy from './legacy.js';

export type { RowQuantizer };
export type RowDequantizer = (src: Uint8Array, dst: Float32Array) => void;

export interface GgmlType {
  /** ggml_type id as stored in GGUF tensor infos. */
  id: number;
  name: string;
  /** Values per block; a row length must be a multiple of it. */
  blockSize: number;
  bytesPerBlock: number;
  /** Converts whole rows (src.length % blockSize === 0) into dst (exactly the encoded size). */
  quantize: RowQuantizer;
  /** The WebAssembly kernel behind `quantize` (`(src, dst, blocks)`), for workers that run it in place; F32 has none. */
  kernel?: KernelName;
  dequantize: RowDequantizer;
}

function asU16(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 1);
  return new Uint16Array(bytes.slice().buffer);
}

function asF32(bytes: Uint8Array): Float32Array {
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
  return new Float32Array(bytes.slice().buffer);
}

const ROWS: GgmlType[] = [
  {
    id: 0, name: 'F32', blockSize: 1, bytesPerBlock: 4,
    quantize: (src, dst) => dst.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength)),
    dequantize: (src, dst) => dst.set(asF32(src.subarray(0, dst.length * 4))),
  },
  {
    id: 1, name: 'F16', blockSize: 1, bytesPerBlock: 2,
    quantize: rowQuantizer('F16', 'fp32ToFp16Row', 1, 2),
    kernel: 'fp32ToFp16Row',
    dequantize: (src, dst) => fp16ToFp32Row(asU16(src.subarray(0, dst.length * 2)), dst),
  },
  { id: 2, name: 'Q4_0', blockSize: 32, bytesPerBlock: 18, quantize: legacy.quantizeRowQ4_0, dequantize: legacy.dequantizeRowQ4_0, kernel: 'quantizeQ4_0' },
  { id: 3, name: 'Q4_1', blockSize: 32, bytesPerBlock: 20, quantize: legacy.quantizeRowQ4_1, dequantize: legacy.dequantizeRowQ4_1, kernel: 'quantizeQ4_1' },
  { id: 6, name: 'Q5_0', blockSize: 32, bytesPerBlock: 22, quantize: legacy.quantizeRowQ5_0, dequantize: legacy.dequantizeRowQ5_0, kernel: 'quantizeQ5_0' },
  { id: 7, name: 'Q5_1', blockSize: 32, bytesPerBlock: 24, quantize: legacy.quantizeRowQ5_1, dequantize: legacy.dequantizeRowQ5_1, kernel: 'quantizeQ5_1' },
  { id: 8, name: 'Q8_0', blockSize: 32, bytesPerBlock: 34, quantize: legacy.quantizeRowQ8_0, dequantize: legacy.dequantizeRowQ8_0, kernel: 'quantizeQ8_0' },
  { id: 12, name: 'Q4_K', blockSize: 256, bytesPerBlock: 144, quantize: kquants.quantizeRowQ4_K, dequantize: kquants.dequantizeRowQ4_K, kernel: 'quantizeQ4K' },
  { id: 13, name: 'Q5_K', blockSize: 256, bytesPerBlock: 176, quantize: kquants.quantizeRowQ5_K, dequantize: kquants.dequantizeRowQ5_K, kernel: 'quantizeQ5K' },
  { id: 14, name: 'Q6_K', blockSize: 256, bytesPerBlock: 210, quantize: kquants.quantizeRowQ6_K, dequantize: kquants.dequantizeRowQ6_K, kernel: 'quantizeQ6K' },
  {
    id: 30, name: 'BF16', blockSize: 1, bytesPerBlock: 2,
    quantize: rowQuantizer('BF16', 'fp32ToBf16Row', 1, 2),
    kernel: 'fp32ToBf16Row',
    dequantize: (src, dst) => bf16ToFp32Row(asU16(src.subarray(0, dst.length * 2)), dst),
  },
];

export const GGML_TYPES: readonly GgmlType[] = ROWS;

const byName = new Map(ROWS.map((t) => [t.name, t]));
const byId = new Map(ROWS.map((t) => [t.id, t]));

export function ggmlTypeByName(name: string): GgmlType | undefined {
  return byName.get(name);
}

export function ggmlTypeById(id: number): GgmlType | undefined {
  return byId.get(id);
}

/** Bytes of one row of `rowLength` values; undefined when the row does not split into whole blocks. */
export function rowBytes(type: GgmlType, rowLength: number): number | undefined {
  if (rowLength % type.blockSize !== 0) return undefined;
  return (rowLength / type.blockSize) * type.bytesPerBlock;
}

/** Bytes of a tensor with GGUF dims `ne` (ne[0] = row length); undefined if rows do not fit blocks. */
export function tensorBytes(type: GgmlType, ne: readonly number[]): number | undefined {
  const row = rowBytes(type, ne[0] ?? 1);
  if (row === undefined) return undefined;
  let rows = 1;
  for (let i = 1; i < ne.length; i++) rows *= ne[i]!;
  return row * rows;
}
