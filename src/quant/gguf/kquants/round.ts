// ggml's nearest_int: add 1.5 * 2^23 in float32 and read the integer out of the mantissa. For |x| < 2^22
// that is round-half-to-even; outside it ggml returns mantissa garbage, which we reproduce bit for bit
// because the result is clamped afterwards and must clamp to the same value.

const MAGIC = 12582912; // 1.5 * 2^23
const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);

export function nearestInt(fval: number): number {
  const s = Math.fround(fval + MAGIC);
  // In [2^23, 2^24) float32 holds exactly the integers, so the mantissa trick equals a subtraction.
  if (s >= 8388608 && s < 16777216) return s - MAGIC;
  f32[0] = s;
  return (i32[0]! & 0x007fffff) - 0x00400000;
}
