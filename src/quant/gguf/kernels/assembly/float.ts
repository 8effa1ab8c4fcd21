// Float and memory helpers every kernel shares: ggml's nearest_int and its fp16 conversions (scalar: one
// value at a time for block scales), and typed loads and stores at byte addresses.

@inline export function getF(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}
@inline export function setF(p: usize, i: i32, v: f32): void {
  store<f32>(p + (<usize>i << 2), v);
}
@inline export function getB(p: usize, i: i32): i32 {
  return <i32>load<u8>(p + <usize>i);
}
@inline export function setB(p: usize, i: i32, v: i32): void {
  store<u8>(p + <usize>i, <u8>v);
}

/** ggml's nearest_int: add 1.5 * 2^23 and read the integer out of the mantissa (garbage past 2^22, as C). */
@inline export function nearestInt(fval: f32): i32 {
  const val: f32 = fval + 12582912.0;
  return (reinterpret<i32>(val) & 0x007fffff) - 0x00400000;
}

@inline export function clampI(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}

/** fp32 -> fp16 bits, round to nearest even, NaN -> 0x7E00 (ggml_compute_fp32_to_fp16). */
export function fp32ToFp16(value: f32): u32 {
  const w = reinterpret<u32>(value);
  const sign = (w >> 16) & 0x8000;
  const abs = w & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00;
  if (abs >= 0x477ff000) return sign | 0x7c00;
  if (abs >= 0x38800000) {
    const h = (abs - 0x38000000) >> 13;
    const rest = abs & 0x1fff;
    return sign | (h + (rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1) ? 1 : 0));
  }
  if (abs < 0x33000000) return sign;
  const exp = abs >> 23;
  const mant = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exp;
  const h = mant >> shift;
  const rest = mant & ((<u32>1 << shift) - 1);
  const half = <u32>1 << (shift - 1);
  return sign | (h + (rest > half || (rest == half && (h & 1) == 1) ? 1 : 0));
}

/** fp16 bits -> fp32, exact. */
export function fp16ToFp32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp == 0) return reinterpret<f32>(sign | reinterpret<u32>(<f32>mant * 5.9604644775390625e-8));
  if (exp == 31) return reinterpret<f32>(sign | 0x7f800000 | (mant << 13));
  return reinterpret<f32>(sign | ((exp + 112) << 23) | (mant << 13));
}

@inline export function storeF16(p: usize, v: f32): f32 {
  const h = fp32ToFp16(v);
  store<u16>(p, <u16>h);
  return fp16ToFp32(h);
}

@inline export function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}
