// F16 and BF16 rows, 8 values at a time. The fp16 conversion is ggml_compute_fp32_to_fp16 itself: its
// float32 scaling trick (two multiplies by powers of two and one add round the mantissa to nearest even,
// subnormals included) has no branches, so it runs lane by lane with the same IEEE float32 results.

import { fp32ToFp16 } from './float';

@inline function fp16x4(x: v128): v128 {
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
