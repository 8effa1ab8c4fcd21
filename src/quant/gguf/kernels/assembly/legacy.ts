// ggml's 32-value block quantizers quantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0}_ref, 4 lanes at a time.
// Every lane does C's float32 operations in C's order (WebAssembly SIMD rounds per lane, never fuses a
// multiply-add), and the block's max, min or absolute max does not depend on the order it is taken in,
// except for the sign of a zero: blocks whose min or max is zero are scanned in C's order.

import { storeF16 } from './float';
import { fp16x4 } from './half';

const FLT_MAX: f32 = 3.4028234663852886e38;

@inline function vec(x: usize, k: i32): v128 {
  return v128.load(x + (<usize>k << 4));
}

@inline function lanesMax(v: v128): f32 {
  return max<f32>(max<f32>(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max<f32>(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

@inline function lanesMin(v: v128): f32 {
  return min<f32>(min<f32>(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), min<f32>(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * max |x| over the block. pmax keeps the running value when compared with NaN, as C's `amax < fabsf(v)`
 * does, so NaN never wins.
 */
@inline function absMax(x: usize): f32 {
  let m = f32x4.splat(0);
  for (let k = 0; k < 8; ++k) m = f32x4.pmax(m, f32x4.abs(vec(x, k)));
  return lanesMax(m);
}

/**
 * The value of largest magnitude with its sign, the first one on ties (C's strict `<`); 0 when all are 0.
 * One pass for the largest and the smallest value (both from 0, so a NaN is never taken, as in C): the
 * one of larger magnitude is the answer, unless +a and -a tie, when the block is scanned in C's order.
 */
@inline function signedAbsMax(x: usize): f32 {
  let hi = f32x4.splat(0);
  let lo = f32x4.splat(0);
  for (let k = 0; k < 8; ++k) {
    const v = vec(x, k);
    hi = f32x4.pmax(hi, v);
    lo = f32x4.pmin(lo, v);
  }
  const top = lanesMax(hi);
  const bottom = -lanesMin(lo);
  if (top > bottom) return top;
  if (bottom > top) return -bottom;
  if (top == 0) return 0;
  const va = f32x4.splat(top);
  for (let k = 0; k < 8; ++k) {
    const hit = i32x4.bitmask(f32x4.eq(f32x4.abs(vec(x, k)), va));
    if (hit != 0) return load<f32>(x + (<usize>k << 4) + (<usize>ctz(hit) << 2));
  }
  return 0;
}

// min and max of a block (Q4_1, Q5_1).
let blockMin: f32 = 0;
let blockMax: f32 = 0;

@inline function minMax(x: usize): void {
  let lo = f32x4.splat(FLT_MAX);
  let hi = f32x4.splat(-FLT_MAX);
  for (let k = 0; k < 8; ++k) {
    const v = vec(x, k);
    lo = f32x4.pmin(lo, v);
    hi = f32x4.pmax(hi, v);
  }
  blockMin = lanesMin(lo);
  blockMax = lanesMax(hi);
  if (blockMin == 0 || blockMax == 0) {
    // -0 and +0 compare equal and C keeps the first it meets; their sign reaches the stored fp16 bytes.
    blockMin = FLT_MAX;
    blockMax = -FLT_MAX;
    for (let j = 0; j < 32; ++j) {
      const v = load<f32>(x + (<usize>j << 2));
      if (v < blockMin) blockMin = v;
      if (v > blockMax) blockMax = v;
    }
  }
}

/**
 * C's (int8_t) / (uint8_t) of a float as llama-quantize's x86-64 build computes it: cvttss2si to int32,
 * which gives INT32_MIN for NaN and anything out of range, then the low byte. It matters: a block of
 * subnormal values has a subnormal d, so id = 1/d is infinite and every x * id is +-inf (or NaN).
 */
@inline function x86Int8(v: v128): v128 {
  const inRange = f32x4.lt(f32x4.abs(v), f32x4.splat(2147483648.0));
  const t = v128.bitselect(i32x4.trunc_sat_f32x4_s(v), i32x4.splat(0x80000000), inRange);
  return i32x4.shr_s(i32x4.shl(t, 24), 24);
}

/** 16 levels from four i32x4 vectors: the low byte of each. */
@inline function bytes16(a: v128, b: v128, c: v128, d: v128): v128 {
  const m = i32x4.splat(0xff);
  return i8x16.narrow_i16x8_u(
    i16x8.narrow_i32x4_s(v128.and(a, m), v128.and(b, m)),
    i16x8.narrow_i32x4_s(v128.and(c, m), v128.and(d, m)));
}

// Levels of the block's first half (values 0-15) and second half (16-31), as bytes.
let lowHalf: v128 = v128.splat<i32>(0);
let highHalf: v128 = v128.splat<i32>(0);

/**
 * MIN(top, (int8_t)((x - sub) * id + add)) for 4 values: Q4_0 and Q5_0 take sub = 0 (x - 0 is x exactly,
 * so the float ops are C's x * id + add), Q4_1 and Q5_1 sub = min and add = 0.5 (Q5_1 has no MIN: top 255).
 */
@inline function levels4(x: v128, vsub: v128, vid: v128, vadd: v128, vtop: v128): v128 {
  return i32x4.min_s(x86Int8(f32x4.add(f32x4.mul(f32x4.sub(x, vsub), vid), vadd)), vtop);
}

/**
 * The same levels when every (x - sub) * id + add lies in [0, 32): when id is finite, |x - sub| <= the
 * block's range makes them so (NaN inputs give 0 both ways), and a truncation needs no x86 emulation.
 */
@inline function inRangeLevels4(x: v128, vsub: v128, vid: v128, vadd: v128, vtop: v128): v128 {
  return i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(f32x4.sub(x, vsub), vid), vadd)), vtop);
}

/** 16 levels in 0..31 from four i32x4 vectors, as bytes (no masking needed). */
@inline function smallBytes16(a: v128, b: v128, c: v128, d: v128): v128 {
  return i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(a, b), i16x8.narrow_i32x4_s(c, d));
}

/** The block's 32 levels into lowHalf and highHalf. */
@inline function levels32(x: usize, sub: f32, id: f32, add: f32, top: i32): void {
  const vsub = f32x4.splat(sub);
  const vid = f32x4.splat(id);
  const vadd = f32x4.splat(add);
  const vtop = i32x4.splat(top);
  if (abs<f32>(id) < Infinity && abs<f32>(sub) < Infinity) {
    lowHalf = smallBytes16(
      inRangeLevels4(vec(x, 0), vsub, vid, vadd, vtop), inRangeLevels4(vec(x, 1), vsub, vid, vadd, vtop),
      inRangeLevels4(vec(x, 2), vsub, vid, vadd, vtop), inRangeLevels4(vec(x, 3), vsub, vid, vadd, vtop));
    highHalf = smallBytes16(
      inRangeLevels4(vec(x, 4), vsub, vid, vadd, vtop), inRangeLevels4(vec(x, 5), vsub, vid, vadd, vtop),
      inRangeLevels4(vec(x, 6), vsub, vid, vadd, vtop), inRangeLevels4(vec(x, 7), vsub, vid, vadd, vtop));
    return;
  }
  lowHalf = bytes16(
    levels4(vec(x, 0), vsub, vid, vadd, vtop), levels4(vec(x, 1), vsub, vid, vadd, vtop),
    levels4(vec(x, 2), vsub, vid, vadd, vtop), levels4(vec(x, 3), vsub, vid, vadd, vtop));
  highHalf = bytes16(
    levels4(vec(x, 4), vsub, vid, vadd, vtop), levels4(vec(x, 5), vsub, vid, vadd, vtop),
    levels4(vec(x, 6), vsub, vid, vadd, vtop), levels4(vec(x, 7), vsub, vid, vadd, vtop));
}

/** Q4_0 / Q4_1: byte j = level j | level j+16 << 4, unmasked as in C (a wrapped level spills over). */
@inline function storeNibbles(at: usize): void {
  v128.store(at, v128.or(lowHalf, i8x16.shl(highHalf, 4)));
}

/** Q5_0 / Q5_1: byte j = (level j & 15) | (level j+16 & 15) << 4. */
@inline function storeMaskedNibbles(at: usize): void {
  v128.store(at, v128.or(v128.and(lowHalf, i8x16.splat(0x0f)), i8x16.shl(highHalf, 4)));
}

/** Bit 4 of level j goes to bit j of qh (j < 32). */
@inline function fifthBits(): u32 {
  return <u32>i8x16.bitmask(i8x16.shl(lowHalf, 3)) | (<u32>i8x16.bitmask(i8x16.shl(highHalf, 3)) << 16);
}

/** Q4_0 and Q5_0: d = max / div (max: the value of largest magnitude), levels of x/d + add, at most top. */
@inline function symmetricBlock(x: usize, y: usize, div: f32, add: f32, top: i32): void {
  const d: f32 = signedAbsMax(x) / div;
  const id: f32 = d != 0 ? 1 / d : 0;
  storeF16(y, d);
  levels32(x, 0, id, add, top);
}

/** Q4_1 and Q5_1: d = (max - min) / steps and m = min, levels of (x - min)/d + 0.5, at most top. */
@inline function fromMinBlock(x: usize, y: usize, steps: f32, top: i32): void {
  minMax(x);
  const d: f32 = (blockMax - blockMin) / steps;
  const id: f32 = d != 0 ? 1 / d : 0;
  // d and m as fp16 at once (the same conversion as storeF16, four lanes at a time).
  const h = fp16x4(f32x4.replace_lane(f32x4.splat(d), 1, blockMin));
  store<u32>(y, i32x4.extract_lane(i16x8.narrow_i32x4_u(h, h), 0));
  levels32(x, blockMin, id, 0.5, top);
}

/** Q4_0: d = max / -8, level = min(15, (int8_t)(x/d + 8.5)). 18 bytes per block. */
export function quantizeQ4_0(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; ++i) {
    const y = dst + <usize>(i * 18);
    symmetricBlock(src + (<usize>i << 7), y, -8, 8.5, 15);
    storeNibbles(y + 2);
  }
}

/** Q4_1: d = (max - min) / 15, m = min, level = min(15, (int8_t)((x - min)/d + 0.5)). 20 bytes. */
export function quantizeQ4_1(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; ++i) {
    const y = dst + <usize>(i * 20);
    fromMinBlock(src + (<usize>i << 7), y, 15, 15);
    storeNibbles(y + 4);
  }
}

/** Q5_0: d = max / -16, level = min(31, (int8_t)(x/d + 16.5)); fifth bits in qh. 22 bytes. */
export function quantizeQ5_0(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; ++i) {
    const y = dst + <usize>(i * 22);
    symmetricBlock(src + (<usize>i << 7), y, -16, 16.5, 31);
    store<u32>(y + 2, fifthBits());
    storeMaskedNibbles(y + 6);
  }
}

/** Q5_1: d = (max - min) / 31, m = min, level = (uint8_t)((x - min)/d + 0.5) (no clamp in C). 24 bytes. */
export function quantizeQ5_1(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; ++i) {
    const y = dst + <usize>(i * 24);
    fromMinBlock(src + (<usize>i << 7), y, 31, 255);
    store<u32>(y + 4, fifthBits());
    storeMaskedNibbles(y + 8);
  }
}

/** roundf for 4 lanes: half away from zero (x - trunc(x) is exact in float32). */
@inline function roundAway(v: v128): v128 {
  const t = f32x4.trunc(v);
  const half = f32x4.ge(f32x4.abs(f32x4.sub(v, t)), f32x4.splat(0.5));
  const one = v128.or(v128.and(v, i32x4.splat(0x80000000)), f32x4.splat(1));
  return f32x4.add(t, v128.and(half, one));
}

@inline function roundedLevels(x: v128, vid: v128): v128 {
  return v128.and(x86Int8(roundAway(f32x4.mul(x, vid))), i32x4.splat(0xff));
}

/**
 * Q8_0's amax is C's `amax = MAX(amax, fabsf(v))` fold, where a NaN does count: MAX(amax, NaN) is NaN
 * and MAX(NaN, v) is v. Blocks without NaN take the vector maximum; the others the fold in C's order.
 */
@inline function foldedAbsMax(x: usize): f32 {
  let m = f32x4.splat(0);
  let nan = i32x4.splat(0);
  for (let k = 0; k < 8; ++k) {
    const v = vec(x, k);
    m = f32x4.pmax(m, f32x4.abs(v));
    nan = v128.or(nan, f32x4.ne(v, v));
  }
  if (!v128.any_true(nan)) return lanesMax(m);
  let amax: f32 = 0;
  for (let j = 0; j < 32; ++j) {
    const a = abs<f32>(load<f32>(x + (<usize>j << 2)));
    amax = amax > a ? amax : a;
  }
  return amax;
}

/** Q8_0: d = amax / 127, level = roundf(x/d). 34 bytes per block. */
export function quantizeQ8_0(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; ++i) {
    const x = src + (<usize>i << 7);
    const y = dst + <usize>(i * 34);
    const d: f32 = foldedAbsMax(x) / 127;
    const id: f32 = d != 0 ? 1 / d : 0;
    storeF16(y, d);
    const vid = f32x4.splat(id);
    for (let h = 0; h < 2; ++h) {
      const k = h * 4;
      const a = i16x8.narrow_i32x4_s(roundedLevels(vec(x, k), vid), roundedLevels(vec(x, k + 1), vid));
      const b = i16x8.narrow_i32x4_s(roundedLevels(vec(x, k + 2), vid), roundedLevels(vec(x, k + 3), vid));
      v128.store(y + 2 + (<usize>h << 4), i8x16.narrow_i16x8_u(a, b));
    }
  }
}
