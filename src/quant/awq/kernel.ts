// 4-bit group quantization with a zero point, as AWQ does it (AutoAWQ pseudo_quantize_tensor): per
// output row and group of `g` input columns, scale = max(max - min, 1e-5) / 15, zero = clamp(-round(min
// / scale), 0, 15), q = clamp(round(w / scale) + zero, 0, 15), w' = (q - zero) * scale; rounding half to
// even (torch.round). The scale is rounded to fp16 BEFORE the zero and codes are computed, because fp16
// is what the checkpoint stores: the codes bake packs dequantize to exactly the weights it searched with.
import { fp32ToFp16, FP16_TO_FP32 } from '../../formats/fp16.js';

export const BITS = 4;
export const MAX_Q = 15;

/** A quantized [out, in] linear: codes and zero points 0..15, fp16 scale bits, per row and group. */
export interface QuantizedLinear {
  out: number;
  in: number;
  groupSize: number;
  /** Row-major [out, in]. */
  q: Uint8Array;
  /** [out, in / groupSize]. */
  zeros: Uint8Array;
  /** fp16 bits, [out, in / groupSize]. */
  scales: Uint16Array;
}

/** Round half to even (torch.round / numpy.round). */
export function roundEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function groupParams(w: Float32Array, at: number, g: number): { scaleBits: number; scale: number; zero: number } {
  let min = w[at]!, max = w[at]!;
  for (let j = 1; j < g; j++) {
    const v = w[at + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const scaleBits = fp32ToFp16(Math.fround(Math.max(max - min, 1e-5) / MAX_Q));
  const scale = FP16_TO_FP32[scaleBits]!;
  const zero = Math.min(MAX_Q, Math.max(0, -roundEven(min / scale)));
  return { scaleBits, scale, zero };
}

/** Quantizes [out, in] weights in groups of `g` along the input (in % g must be 0). */
export function quantizeGroups(w: Float32Array, out: number, inF: number, g: number): QuantizedLinear {
  if (inF % g !== 0 || w.length !== out * inF) throw new RangeError(`cannot quantize [${out}, ${inF}] in groups of ${g}`);
  const groups = inF / g;
  const q = new Uint8Array(out * inF);
  const zeros = new Uint8Array(out * groups);
  const scales = new Uint16Array(out * groups);
  for (let gi = 0; gi < out * groups; gi++) {
    const at = gi * g;
    const p = groupParams(w, at, g);
    zeros[gi] = p.zero;
    scales[gi] = p.scaleBits;
    for (let j = 0; j < g; j++) q[at + j] = Math.min(MAX_Q, Math.max(0, roundEven(w[at + j]! / p.scale) + p.zero));
  }
  return { out, in: inF, groupSize: g, q, zeros, scales };
}

/** The weights a quantized linear stands for: (q - zero) * scale, exact in float32. */
export function dequantize(ql: QuantizedLinear): Float32Array {
  const w = new Float32Array(ql.out * ql.in);
  const g = ql.groupSize;
  for (let gi = 0; gi < ql.zeros.length; gi++) {
    const s = FP16_TO_FP32[ql.scales[gi]!]!;
    const z = ql.zeros[gi]!;
    for (let j = 0, at = gi * g; j < g; j++) w[at + j] = (ql.q[at + j]! - z) * s;
  }
  return w;
}

/** Quantize-dequantize in one pass (the search's hot path): the same values as dequantize(quantizeGroups(w)). */
export function fakeQuantize(w: Float32Array, out: number, inF: number, g: number, into = new Float32Array(w.length)): Float32Array {
  for (let at = 0; at < out * inF; at += g) {
    const p = groupParams(w, at, g);
    for (let j = 0; j < g; j++) into[at + j] = (Math.min(MAX_Q, Math.max(0, roundEven(w[at + j]! / p.scale) + p.zero)) - p.zero) * p.scale;
  }
  return into;
}

/** Values as stored in fp16 and read back (tensors that ship in fp16). */
export function roundToFp16(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = FP16_TO_FP32[fp32ToFp16(a[i]!)]!;
  return out;
}

export function toFp16Bits(a: Float32Array): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = fp32ToFp16(a[i]!);
  return out;
}
