// F16 and BF16 rows, 8 values at a time. The fp16 conversion is ggml_compute_fp32_to_fp16 itself: its
// float32 scaling trick (two multiplies by powers of two and one add round the mantissa to nearest even,
// subnormals included) has no branches, so it runs lane by lane with the same IEEE float32 results.
// The other way (F16 / BF16 inputs widened for the quantizers) is exact and done with bit operations,
// so NaN payloads come through as they are.

import { fp16ToFp32, fp32ToFp16 } from './float';

@inline export function fp16x4(x: v128): v128 {
  // base = (|x| * 2^112) * 2^-110
  let base = f32x4.mul(f32x4.mul(f32x4.abs(x), i32x4.splat(0x77800000)), i32x4.splat(0x08800000));
  const shl1 = i32x4.shl(x, 1);
  const sign = v128.and(x, i32x4.splat(0x80000000));
  const bias = i32x4.max_u(v128.and(shl1, i32x4.splat(0xff000000)), i32x4.splat(0x71000000));
  base = f32x4.add(i32x4.add(i32x4.shr_u(bias, 1), i32x4.splat(0x07800000)), base);
  const nonsign = i32x4.add(v128.and(i32x4.shr_u(base, 13), i32x4.splat(0x7c00)), v128.and(base, i32x4.splat(0xfff)));
  const nan = i32x4.gt_u(shl1, i32x4.splat(0xff000000));
  return v128.or(i32x4.shr_u(sign, 16), v128.bitselect(i32x4.splat(0x7e00), nonsign, nan));
}

/** ggml_compute_fp32_to_bf16: round to nearest even; NaN kept quiet. */
@inline function bf16x4(x: v128): v128 {
  const top = i32x4.shr_u(x, 16);
  const rounded = i32x4.shr_u(i32x4.add(x, i32x4.add(i32x4.splat(0x7fff), v128.and(top, i32x4.splat(1)))), 16);
  const nan = i32x4.gt_u(v128.and(x, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000));
  return v128.bitselect(v128.or(top, i32x4.splat(64)), rounded, nan);
}

/** n float32 values at src to fp16 bits at dst. */
export function fp32ToFp16Row(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const x = src + (<usize>i << 2);
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(fp16x4(v128.load(x)), fp16x4(v128.load(x + 16))));
  }
  for (; i < n; ++i) store<u16>(dst + (<usize>i << 1), <u16>fp32ToFp16(load<f32>(src + (<usize>i << 2))));
}

/** n float32 values at src to bf16 bits at dst. */
export function fp32ToBf16Row(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const x = src + (<usize>i << 2);
    // The low half of each 32-bit lane: results are below 2^16.
    const v = bf16x4(v128.load(x));
    store<u64>(dst + (<usize>i << 1), i64x2.extract_lane(i16x8.narrow_i32x4_u(v, v), 0));
  }
  for (; i < n; ++i) {
    const v = bf16x4(v128.splat<f32>(load<f32>(src + (<usize>i << 2))));
    store<u16>(dst + (<usize>i << 1), <u16>i32x4.extract_lane(v, 0));
  }
}

/** Four fp16 values (zero-extended in 32-bit lanes) as float32 bits, exactly. */
@inline function widenFp16x4(h: v128): v128 {
  const sign = i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16);
  const exp = v128.and(i32x4.shr_u(h, 10), i32x4.splat(0x1f));
  const mant = v128.and(h, i32x4.splat(0x3ff));
  const normal = v128.or(i32x4.shl(i32x4.add(exp, i32x4.splat(112)), 23), i32x4.shl(mant, 13));
  const special = v128.or(i32x4.splat(0x7f800000), i32x4.shl(mant, 13));
  // Zero and subnormals: mant * 2^-24, exact in float32.
  const tiny = f32x4.mul(f32x4.convert_i32x4_u(mant), f32x4.splat(5.9604644775390625e-8));
  const body = v128.bitselect(tiny, v128.bitselect(special, normal, i32x4.eq(exp, i32x4.splat(31))), i32x4.eq(exp, i32x4.splat(0)));
  return v128.or(sign, body);
}

/** n fp16 values at src to float32 at dst (exact). */
export function fp16ToFp32Row(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    const y = dst + (<usize>i << 2);
    v128.store(y, widenFp16x4(i32x4.extend_low_i16x8_u(h)));
    v128.store(y + 16, widenFp16x4(i32x4.extend_high_i16x8_u(h)));
  }
  for (; i < n; ++i) store<f32>(dst + (<usize>i << 2), fp16ToFp32(<u32>load<u16>(src + (<usize>i << 1))));
}

/** n bf16 values at src to float32 at dst (exact: the top half of the float's bits). */
export function bf16ToFp32Row(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    const y = dst + (<usize>i << 2);
    v128.store(y, i32x4.shl(i32x4.extend_low_i16x8_u(h), 16));
    v128.store(y + 16, i32x4.shl(i32x4.extend_high_i16x8_u(h), 16));
  }
  for (; i < n; ++i) store<u32>(dst + (<usize>i << 2), <u32>load<u16>(src + (<usize>i << 1)) << 16);
}
