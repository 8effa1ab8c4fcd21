// Half and brain-float conversions exactly as ggml does them (ggml-impl.h): fp32 -> fp16 rounds to nearest
// even with NaN -> 0x7E00, fp32 -> bf16 rounds to nearest even with NaN forced quiet. Used for block
// scales and for F16 / BF16 tensors, so they must match llama-quantize bit for bit.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 value -> fp16 bits, round to nearest even (ggml_compute_fp32_to_fp16). */
export function fp32ToFp16(value: number): number {
  scratchF32[0] = value;
  const w = scratchU32[0]!;
  const sign = (w >>> 16) & 0x8000;
  const abs = w & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00; // NaN
  if (abs >= 0x477ff000) return sign | 0x7c00; // rounds to >= 65520: infinity
  if (abs >= 0x38800000) {
    // Normal half: drop 13 mantissa bits with round-to-nearest-even (the carry may bump the exponent: correct).
    const h = ((abs - 0x38000000) >>> 13);
    const rest = abs & 0x1fff;
    return sign | (h + (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1) ? 1 : 0));
  }
  if (abs < 0x33000000) return sign; // below half the smallest subnormal
  // Subnormal half: value = m * 2^-24.
  const exp = abs >>> 23;
  const mant = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exp; // 14..24 bits dropped
  const h = mant >>> shift;
  const rest = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (h + (rest > half || (rest === half && (h & 1) === 1) ? 1 : 0));
}

/** All 65536 fp16 values as float32: the conversion is exact, a table is the fastest way. */
export const FP16_TO_FP32: Float32Array = (() => {
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  // Built from bit patterns (every process and worker builds it at start-up: integer ops are cheap).
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = (sign ? -mant : mant) * 2 ** -24; // zero and subnormals
    else if (exp === 0x1f) bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, NaN with ggml's payload
    else bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  }
  return table;
})();

export function fp16ToFp32(h: number): number {
  return FP16_TO_FP32[h & 0xffff]!;
}

export function bf16ToFp32Row(src: Uint16Array, dst: Float32Array): void {
  const u = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) u[i] = src[i]! << 16;
}

export function fp16ToFp32Row(src: Uint16Array, dst: Float32Array): void {
  for (let i = 0; i < src.length; i++) dst[i] = FP16_TO_FP32[src[i]!]!;
}

/** Current value in scratch, for callers that need the float32 bit pattern of a number. */
export function fp32Bits(value: number): number {
  scratchF32[0] = value;
  return scratchU32[0]!;
}

/** Writes `value` as little-endian fp16 bits at `at` (the block scales of GGUF types). */
export function writeF16(dst: Uint8Array, at: number, value: number): void {
  const h = fp32ToFp16(value);
  dst[at] = h & 0xff;
  dst[at + 1] = h >>> 8;
}

/** Reads little-endian fp16 bits at `at` as a float32 value. */
export function readF16(src: Uint8Array, at: number): number {
  return FP16_TO_FP32[src[at]! | (src[at + 1]! << 8)]!;
}
