// IEEE half <-> single conversion with round-to-nearest-even, as ggml's software path (ggml-impl.h)
// converts block scales. NaN becomes the quiet NaN 0x7E00 with its sign, overflow becomes infinity.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> fp16 bits (round to nearest, ties to even). */
export function fp32ToFp16Bits(value: number): number {
  f32[0] = value;
  const w = u32[0]!;
  const sign = (w >>> 16) & 0x8000;
  const exp = (w >>> 23) & 0xff;
  let mant = w & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? 0x7e00 : 0x7c00);
  // Unbiased exponent; half normals cover [-14, 15].
  const e = exp - 127;
  if (e > 15) return sign | 0x7c00;
  if (e >= -14) {
    // Normal half: keep 10 mantissa bits, round the 13 dropped bits to nearest even.
    let h = ((e + 15) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // a carry may roll into inf: correct
    return sign | h;
  }
  // Subnormal half (or zero): value = m * 2^-24, m an integer < 1024.
  if (e < -25) return sign; // below half the smallest subnormal: rounds to zero
  mant |= 0x800000; // implicit bit (float32 subnormals already returned zero above)
  const shift = 13 + (-14 - e); // 14..24 bits dropped
  let h = mant >>> shift;
  const rest = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h += 1;
  return sign | h;
}

/** fp16 bits -> float32 value (exact). */
export function fp16BitsToFp32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : Number.NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}
