// The two checkpoint layouts vLLM loads for 4-bit AWQ weights, packed and unpacked. Unpacking is
// written as the loaders read (vLLM's awq_dequantize / awq_triton with AWQ_REVERSE_ORDER; compressed-
// tensors' unpack_from_int32), not as the inverse of our packer, so a round trip checks the layout.
//
// AutoAWQ GEMM (awq/modules/linear/gemm.py WQLinear_GEMM.from_linear):
//   qweight int32 [in, out/8]: word c of row i holds columns 8c + [0,2,4,6,1,3,5,7][k] in nibble k;
//   qzeros  int32 [in/g, out/8]: the zero points, packed the same way;
//   scales  fp16  [in/g, out].
// compressed-tensors pack-quantized (compressors/quantized_compressors/pack_quantized.py), asymmetric group:
//   weight_packed     int32 [out, in/8]: word c of row o holds columns 8c + k in nibble k, values q - 8 + 8;
//   weight_zero_point int32 [out/8, in/g]: packed along the OUTPUT dim (row 8r + k in nibble k), z - 8 + 8;
//   weight_scale      fp16  [out, in/g];
//   weight_shape      int64 [2] = [out, in].
// Both store the same unsigned nibbles: compressed-tensors' signed int4 values plus its offset of 8.
import type { QuantizedLinear } from './kernel.js';

export const PACK = 8;
/** Nibble k of an AutoAWQ word holds column offset AWQ_ORDER[k]. */
export const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;
/** Column offset j sits in nibble AWQ_REVERSE_ORDER[j] (vLLM's name). */
export const AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7] as const;

/** Scales as fp16 bits (what bake writes) or float32 values (what a reader widened from fp16 or bf16). */
type Scales = Uint16Array | Float32Array;

export interface AwqGemmTensors<S extends Scales = Uint16Array> {
  qweight: Int32Array;
  qzeros: Int32Array;
  scales: S;
}

export interface CompressedTensors<S extends Scales = Uint16Array> {
  weight_packed: Int32Array;
  weight_zero_point: Int32Array;
  weight_scale: S;
  weight_shape: BigInt64Array;
}

/** Codes and zero points as unpacked, with scales of the type given. */
export interface Unpacked<S extends Scales> extends Omit<QuantizedLinear, 'scales'> {
  scales: S;
}

function like<S extends Scales>(a: S, n: number): S {
  return new (a.constructor as new (n: number) => S)(n);
}

function checkPackable(ql: QuantizedLinear): void {
  if (ql.out % PACK !== 0 || ql.in % PACK !== 0 || ql.in % ql.groupSize !== 0) {
    throw new RangeError(`[${ql.out}, ${ql.in}] with group ${ql.groupSize} cannot be packed (out and in must be multiples of 8, in of the group)`);
  }
}

export function packAwqGemm(ql: QuantizedLinear): AwqGemmTensors {
  checkPackable(ql);
  const { out, in: inF, groupSize: g } = ql;
  const words = out / PACK;
  const groups = inF / g;
  const qweight = new Int32Array(inF * words);
  for (let i = 0; i < inF; i++) {
    for (let c = 0; c < words; c++) {
      let word = 0;
      for (let k = 0; k < PACK; k++) word |= ql.q[(c * PACK + AWQ_ORDER[k]!) * inF + i]! << (4 * k);
      qweight[i * words + c] = word;
    }
  }
  const qzeros = new Int32Array(groups * words);
  const scales = new Uint16Array(groups * out);
  for (let gi = 0; gi < groups; gi++) {
    for (let c = 0; c < words; c++) {
      let word = 0;
      for (let k = 0; k < PACK; k++) word |= ql.zeros[(c * PACK + AWQ_ORDER[k]!) * groups + gi]! << (4 * k);
      qzeros[gi * words + c] = word;
    }
    for (let o = 0; o < out; o++) scales[gi * out + o] = ql.scales[o * groups + gi]!;
  }
  return { qweight, qzeros, scales };
}

/** vLLM's reading of an AutoAWQ GEMM linear: nibble AWQ_REVERSE_ORDER[j] of word c is column 8c + j. */
export function unpackAwqGemm<S extends Scales>(t: AwqGemmTensors<S>, out: number, inF: number, g: number): Unpacked<S> {
  const words = out / PACK;
  const groups = inF / g;
  const q = new Uint8Array(out * inF);
  for (let i = 0; i < inF; i++) {
    for (let col = 0; col < out; col++) {
      const word = t.qweight[i * words + (col >> 3)]!;
      q[col * inF + i] = (word >>> (4 * AWQ_REVERSE_ORDER[col & 7]!)) & 0xf;
    }
  }
  const zeros = new Uint8Array(out * groups);
  const scales = like(t.scales, out * groups);
  for (let gi = 0; gi < groups; gi++) {
    for (let col = 0; col < out; col++) {
      zeros[col * groups + gi] = (t.qzeros[gi * words + (col >> 3)]! >>> (4 * AWQ_REVERSE_ORDER[col & 7]!)) & 0xf;
      scales[col * groups + gi] = t.scales[gi * out + col]!;
    }
  }
  return { out, in: inF, groupSize: g, q, zeros, scales };
}

export function packCompressed(ql: QuantizedLinear): CompressedTensors {
  checkPackable(ql);
  const { out, in: inF, groupSize: g } = ql;
  const words = inF / PACK;
  const groups = inF / g;
  const weight_packed = new Int32Array(out * words);
  for (let o = 0; o < out; o++) {
    for (let c = 0; c < words; c++) {
      let word = 0;
      for (let k = 0; k < PACK; k++) word |= ql.q[o * inF + c * PACK + k]! << (4 * k);
      weight_packed[o * words + c] = word;
    }
  }
  const weight_zero_point = new Int32Array((out / PACK) * groups);
  for (let r = 0; r < out / PACK; r++) {
    for (let gi = 0; gi < groups; gi++) {
      let word = 0;
      for (let k = 0; k < PACK; k++) word |= ql.zeros[(r * PACK + k) * groups + gi]! << (4 * k);
      weight_zero_point[r * groups + gi] = word;
    }
  }
  return { weight_packed, weight_zero_point, weight_scale: ql.scales.slice(), weight_shape: BigInt64Array.of(BigInt(out), BigInt(inF)) };
}

/** compressed-tensors' unpack_from_int32 (signed value = nibble - 8) for the weight (dim 1) and zero point (dim 0). */
export function unpackCompressed<S extends Scales>(t: CompressedTensors<S>, g: number): Unpacked<S> {
  const out = Number(t.weight_shape[0]);
  const inF = Number(t.weight_shape[1]);
  const words = Math.ceil(inF / PACK);
  const groups = inF / g;
  const q = new Uint8Array(out * inF);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inF; i++) {
      const signed = ((t.weight_packed[o * words + (i >> 3)]! >>> (4 * (i & 7))) & 0xf) - 8;
      q[o * inF + i] = signed + 8;
    }
  }
  const zeros = new Uint8Array(out * groups);
  for (let o = 0; o < out; o++) {
    for (let gi = 0; gi < groups; gi++) {
      const signed = ((t.weight_zero_point[(o >> 3) * groups + gi]! >>> (4 * (o & 7))) & 0xf) - 8;
      zeros[o * groups + gi] = signed + 8;
    }
  }
  return { out, in: inF, groupSize: g, q, zeros, scales: t.weight_scale.slice() as S };
}

/** Zero points of a symmetric compressed-tensors checkpoint (signed 0 = nibble 8), packed as the asymmetric ones. */
export function symmetricZeroPoints(out: number, groups: number): Int32Array {
  return new Int32Array(Math.ceil(out / PACK) * groups).fill(0x88888888 | 0);
}
