// AssemblyScript (compiled to ../kquants.wasm by `npm run build:wasm`): ggml's K-quant row quantizers
// quantize_row_q4_K_ref / q5_K / q6_K and their scale searches make_qkx2_quants / make_qx_quants.
// WebAssembly has native float32 arithmetic and never fuses a multiply-add, so written in C's order every
// operation rounds exactly as in llama-quantize's baseline x86-64 build: the bytes are ggml's.
// The searches also skip work ggml does twice; each shortcut says why it gives the same bytes.

const QK_K: i32 = 256;
const Q4_K_BLOCK: i32 = 144; // d, dmin, scales[12], qs[128]
const Q5_K_BLOCK: i32 = 176; // d, dmin, scales[12], qh[32], qs[128]
const Q6_K_BLOCK: i32 = 210; // ql[128], qh[64], scales[16] (int8), d
const RDELTA: f32 = 0.1;
/** ggml's GROUP_MAX_EPS: below this max |x| a group counts as all zero. */
const GROUP_MAX_EPS: f32 = 1e-15;

// Scratch in static memory (one block at a time; every caller runs single-threaded in its own instance).
const XS: usize = memory.data(QK_K * 4, 16); // the sub-block's values
const WS: usize = memory.data(QK_K * 4, 16); // their importance weights
const XM: usize = memory.data(QK_K * 4, 16); // x - min for the current min
const WQ: usize = memory.data(QK_K * 4, 16); // x*x (Q6_K weights)
const WXQ: usize = memory.data(QK_K * 4, 16); // x*x*x
// Partial sums of the last evaluated candidate: entry i sums elements 0..i-1.
const PRE1: usize = memory.data((QK_K + 1) * 4, 16);
const PRE2: usize = memory.data((QK_K + 1) * 4, 16);
const PRE3: usize = memory.data((QK_K + 1) * 4, 16);
const L: usize = memory.data(QK_K, 16); // levels of the whole super-block
const LV: usize = memory.data(QK_K * 4, 16); // levels of the candidate being tried (i32, for SIMD)
const SCALES: usize = memory.data((QK_K / 16) * 4, 16);
const MINS: usize = memory.data((QK_K / 32) * 4, 16);

@inline function getF(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}
@inline function setF(p: usize, i: i32, v: f32): void {
  store<f32>(p + (<usize>i << 2), v);
}
@inline function getB(p: usize, i: i32): i32 {
  return <i32>load<u8>(p + <usize>i);
}
@inline function setB(p: usize, i: i32, v: i32): void {
  store<u8>(p + <usize>i, <u8>v);
}

/** ggml's nearest_int: add 1.5 * 2^23 and read the integer out of the mantissa (garbage past 2^22, as C). */
@inline function nearestInt(fval: f32): i32 {
  const val: f32 = fval + 12582912.0;
  return (reinterpret<i32>(val) & 0x007fffff) - 0x00400000;
}

@inline function clampI(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * Levels of 4 values at once: nearest_int(iscale * x) clamped to [lo, hi], lane by lane the same float32
 * operations as the scalar nearestInt (WebAssembly SIMD is IEEE per lane and has no fused multiply-add).
 */
@inline function levels4(viscale: v128, x: v128, vlo: v128, vhi: v128): v128 {
  const v = f32x4.add(f32x4.mul(viscale, x), f32x4.splat(12582912.0));
  const l = i32x4.sub(v128.and(v, i32x4.splat(0x007fffff)), i32x4.splat(0x00400000));
  return i32x4.min_s(i32x4.max_s(l, vlo), vhi);
}

/**
 * Writes the levels of the n values at x (n a multiple of 4) under iscale to LV, and returns the first
 * index whose level changed from what LV held (n when none did).
 */
@inline function updateLevels(n: i32, iscale: f32, x: usize, lo: i32, hi: i32): i32 {
  const viscale = f32x4.splat(iscale);
  const vlo = i32x4.splat(lo);
  const vhi = i32x4.splat(hi);
  // Branch-free (which levels change is data, so branches on it mispredict): one bit per value, n <= 32.
  let changed: u32 = 0;
  for (let i = 0; i < n; i += 4) {
    const at = <usize>i << 2;
    const l = levels4(viscale, v128.load(x + at), vlo, vhi);
    changed |= <u32>i32x4.bitmask(i32x4.ne(l, v128.load(LV + at))) << i;
    v128.store(LV + at, l);
  }
  return changed == 0 ? n : <i32>ctz(changed);
}

/** fp32 -> fp16 bits, round to nearest even, NaN -> 0x7E00 (ggml_compute_fp32_to_fp16). */
function fp32ToFp16(value: f32): u32 {
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
function fp16ToFp32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp == 0) return reinterpret<f32>(sign | reinterpret<u32>(<f32>mant * 5.9604644775390625e-8));
  if (exp == 31) return reinterpret<f32>(sign | 0x7f800000 | (mant << 13));
  return reinterpret<f32>(sign | ((exp + 112) << 23) | (mant << 13));
}

@inline function storeF16(p: usize, v: f32): f32 {
  const h = fp32ToFp16(v);
  store<u16>(p, <u16>h);
  return fp16ToFp32(h);
}

/** x - min for the values in XS, rounded to float like C's `x[i] - min`. */
function shiftBy(n: i32, min: f32): void {
  for (let i = 0; i < n; ++i) setF(XM, i, getF(XS, i) - min);
}

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** sum of w * (scale * l + min - x)^2 over the n values in XS/WS/LV, each term as C computes it, summed by lane. */
@inline function laneError(n: i32, scale: f32, min: f32): f32 {
  const vs = f32x4.splat(scale);
  const vm = f32x4.splat(min);
  let acc = f32x4.splat(0);
  for (let i = 0; i < n; i += 4) {
    const at = <usize>i << 2;
    const l = f32x4.convert_i32x4_s(v128.load(LV + at));
    const diff = f32x4.sub(f32x4.add(f32x4.mul(vs, l), vm), v128.load(XS + at));
    acc = f32x4.add(acc, f32x4.mul(v128.load(WS + at), f32x4.mul(diff, diff)));
  }
  return hsum(acc);
}

// make_qkx2_quants' result: the scale and the min (ggml returns -min).
let qkScale: f32 = 0;
let qkMin: f32 = 0;

/**
 * Asymmetric scale + min for the n values in XS with weights WS (Q4_K, Q5_K): levels 0..nmax at L+off,
 * x ~ scale*L - min.
 */
function makeQkx2Quants(n: i32, nmax: i32, off: i32, rmin: f32, nstep: i32): void {
  let min = getF(XS, 0);
  let max = min;
  let sumW = getF(WS, 0);
  let sumX = sumW * min;
  for (let i = 1; i < n; ++i) {
    const xi = getF(XS, i);
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = getF(WS, i);
    sumW += w;
    sumX += w * xi;
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (let i = 0; i < n; ++i) setB(L, off + i, 0);
    qkScale = 0;
    qkMin = -min;
    return;
  }
  let iscale: f32 = <f32>nmax / (max - min);
  let scale: f32 = 1 / iscale;
  let bestError: f32 = 0;
  shiftBy(n, min);
  for (let i = 0; i < n; ++i) {
    const q = clampI(nearestInt(iscale * getF(XM, i)), 0, nmax);
    setB(L, off + i, q);
    const diff = scale * <f32>q + min - getF(XS, i);
    bestError += getF(WS, i) * (diff * diff);
  }
  for (let is = 0; is <= nstep; ++is) {
    // ggml divides by the current range: `min` moves to the best candidate's min as the search goes.
    iscale = (rmin + RDELTA * <f32>is + <f32>nmax) / (max - min);
    // Neighbouring candidates often round to the same levels; then every sum, the error and the outcome
    // are those of the previous candidate (already kept or rejected), so the rest is skipped. Float sums
    // taken in order depend only on their terms, so they resume from the first changed level.
    // (LV holds stale levels before the first candidate: that one is always evaluated in full.)
    let first = updateLevels(n, iscale, XM, 0, nmax);
    if (is == 0) first = 0;
    if (first == n) continue;
    let sumL = getF(PRE1, first);
    let sumL2 = getF(PRE2, first);
    let sumXL = getF(PRE3, first);
    for (let i = first; i < n; ++i) {
      const l = <f32>load<i32>(LV + (<usize>i << 2));
      const wl = getF(WS, i) * l;
      sumL += wl;
      sumL2 += wl * l;
      sumXL += wl * getF(XS, i);
      setF(PRE1, i + 1, sumL);
      setF(PRE2, i + 1, sumL2);
      setF(PRE3, i + 1, sumXL);
    }
    const D = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale = (sumW * sumXL - sumX * sumL) / D;
      let thisMin = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      // Most candidates lose by far. Their error summed 4 lanes at a time differs from C's sum in order
      // by at most 41 ulp of the sum (31 for C's order plus 10 for 8 terms per lane and 3 lane adds; all
      // terms >= 0), about 2.5e-6 relative, so a lane sum above bestError * (1 + 1e-5) means C's
      // sum is above bestError too: rejected without the sum in order.
      if (laneError(n, thisScale, thisMin) > bestError * (1 + 1e-5)) continue;
      // The error only grows (terms w * diff^2 >= 0, rounding included): stop once it reaches bestError.
      let curError: f32 = 0;
      let i = 0;
      for (; i < n; ++i) {
        const diff = thisScale * <f32>load<i32>(LV + (<usize>i << 2)) + thisMin - getF(XS, i);
        curError += getF(WS, i) * (diff * diff);
        if (curError >= bestError) break;
      }
      if (i == n && curError < bestError) {
        for (let k = 0; k < n; ++k) setB(L, off + k, load<i32>(LV + (<usize>k << 2)));
        bestError = curError;
        scale = thisScale;
        if (thisMin != min) shiftBy(n, thisMin);
        min = thisMin;
      }
    }
  }
  qkScale = scale;
  qkMin = -min;
}

/**
 * Symmetric scale for 16 values at XS+off (Q6_K: make_qx_quants, rmse_type 1, no importance weights):
 * levels -nmax..nmax-1 stored as L + nmax, weights x^2, 18 nearby scales tried. Returns the scale.
 */
function makeQxQuants(n: i32, nmax: i32, off: i32): f32 {
  const x = XS + (<usize>off << 2);
  let max: f32 = 0;
  let amax: f32 = 0;
  for (let i = 0; i < n; ++i) {
    const xi = getF(x, i);
    const ax = abs<f32>(xi);
    if (ax > amax) {
      amax = ax;
      max = xi;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; ++i) setB(L, off + i, 0);
    return 0;
  }
  const lo = -nmax;
  const hi = nmax - 1;
  let iscale: f32 = <f32>(-nmax) / max;
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; ++i) {
    const xi = getF(x, i);
    const w = xi * xi;
    setF(WQ, i, w);
    setF(WXQ, i, w * xi);
    const l = clampI(nearestInt(iscale * xi), lo, hi);
    store<i32>(LV + (<usize>i << 2), l);
    setB(L, off + i, l + nmax);
    const lf = <f32>l;
    sumlx += w * xi * lf;
    suml2 += w * lf * lf;
    setF(PRE1, i + 1, sumlx);
    setF(PRE2, i + 1, suml2);
  }
  let scale: f32 = suml2 != 0 ? sumlx / suml2 : 0;
  let best = scale * sumlx;
  // PRE1/PRE2 hold the sums in order of the levels last summed in order; `dirty` is the first level
  // changed since then.
  let dirty = n;
  for (let is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(<f32>nmax + RDELTA * <f32>is) / max;
    // As in makeQkx2Quants: unchanged levels give the previous candidate's sums and outcome (the first
    // candidate's "previous" is the first guess, already `best`).
    const first = updateLevels(n, iscale, x, lo, hi);
    if (first == n) continue;
    if (first < dirty) dirty = first;
    // Every term of sumlx (x^3 * l) has one sign, as does every term of suml2, so their sums by lane are
    // within 21 ulp of C's sums in order (15 for C's order, 6 by lane); the two sides of the test below
    // then differ from C's by under 70 ulp (4.2e-6 relative), so a candidate that loses by more than 1e-5 by lane
    // loses in C too. Accepting one needs the sums in order.
    let lx = f32x4.splat(0);
    let l2 = f32x4.splat(0);
    for (let i = 0; i < n; i += 4) {
      const at = <usize>i << 2;
      const lf = f32x4.convert_i32x4_s(v128.load(LV + at));
      lx = f32x4.add(lx, f32x4.mul(v128.load(WXQ + at), lf));
      l2 = f32x4.add(l2, f32x4.mul(f32x4.mul(v128.load(WQ + at), lf), lf));
    }
    const lxSum = hsum(lx);
    const l2Sum = hsum(l2);
    if (!(l2Sum > 0)) continue; // terms >= 0: zero by lane exactly when zero in order
    const rhs = best * l2Sum;
    if (rhs > 1e-30 && lxSum * lxSum < rhs * (1 - 1e-5)) continue;
    sumlx = getF(PRE1, dirty);
    suml2 = getF(PRE2, dirty);
    for (let i = dirty; i < n; ++i) {
      const lf = <f32>load<i32>(LV + (<usize>i << 2));
      sumlx += getF(WXQ, i) * lf;
      suml2 += getF(WQ, i) * lf * lf;
      setF(PRE1, i + 1, sumlx);
      setF(PRE2, i + 1, suml2);
    }
    dirty = n;
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (let k = 0; k < n; ++k) setB(L, off + k, load<i32>(LV + (<usize>k << 2)) + nmax);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/** ggml's get_scale_min_k4, packed as scale | min << 8. */
@inline function scaleMinK4(q: usize, j: i32): i32 {
  if (j < 4) return (getB(q, j) & 63) | ((getB(q, j + 4) & 63) << 8);
  const s = (getB(q, j + 4) & 0xf) | ((getB(q, j - 4) >> 6) << 4);
  const m = (getB(q, j + 4) >> 4) | ((getB(q, j) >> 6) << 4);
  return s | (m << 8);
}

/**
 * What Q4_K and Q5_K share: per 32-value sub-block an asymmetric (scale, min) search, both quantized to
 * 6 bits against fp16 super-scales d and dmin, then the levels recomputed from the stored scales.
 * Writes d, dmin and scales[12] at `dst`, and the levels to L.
 */
function quantizeScaleMinBlock(x: usize, dst: usize, nmax: i32, rmin: f32, nstep: i32): void {
  let maxScale: f32 = 0;
  let maxMin: f32 = 0;
  for (let j = 0; j < QK_K / 32; ++j) {
    let sumX2: f32 = 0;
    for (let l = 0; l < 32; ++l) {
      const v = getF(x, 32 * j + l);
      sumX2 += v * v;
    }
    const avX = sqrt<f32>(sumX2 / 32);
    for (let l = 0; l < 32; ++l) {
      const v = getF(x, 32 * j + l);
      setF(XS, l, v);
      setF(WS, l, avX + abs<f32>(v));
    }
    makeQkx2Quants(32, nmax, 32 * j, rmin, nstep);
    setF(SCALES, j, qkScale);
    setF(MINS, j, qkMin);
    if (qkScale > maxScale) maxScale = qkScale;
    if (qkMin > maxMin) maxMin = qkMin;
  }
  const invScale: f32 = maxScale > 0 ? 63 / maxScale : 0;
  const invMin: f32 = maxMin > 0 ? 63 / maxMin : 0;
  const sc = dst + 4;
  for (let j = 0; j < QK_K / 32; ++j) {
    // uint8_t in C: the int wraps before the clamp to 63.
    const ls = min<i32>(63, nearestInt(invScale * getF(SCALES, j)) & 0xff);
    const lm = min<i32>(63, nearestInt(invMin * getF(MINS, j)) & 0xff);
    if (j < 4) {
      setB(sc, j, ls);
      setB(sc, j + 4, lm);
    } else {
      setB(sc, j + 4, (ls & 0xf) | ((lm & 0xf) << 4));
      setB(sc, j - 4, getB(sc, j - 4) | ((ls >> 4) << 6));
      setB(sc, j, getB(sc, j) | ((lm >> 4) << 6));
    }
  }
  const d0 = storeF16(dst, maxScale / 63);
  const dmin0 = storeF16(dst + 2, maxMin / 63);
  for (let j = 0; j < QK_K / 32; ++j) {
    const smk = scaleMinK4(sc, j);
    const d = d0 * <f32>(smk & 0xff);
    if (d == 0) continue;
    const dm = dmin0 * <f32>(smk >> 8);
    for (let ii = 0; ii < 32; ++ii) {
      const l = nearestInt((getF(x, 32 * j + ii) + dm) / d);
      setB(L, 32 * j + ii, clampI(l, 0, nmax));
    }
  }
}

/** quantize_row_q4_K_ref over nb super-blocks: f32 values at src, blocks to dst. */
export function quantizeQ4K(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; ++i) {
    const at = dst + <usize>(i * Q4_K_BLOCK);
    const x = src + (<usize>(i * QK_K) << 2);
    quantizeScaleMinBlock(x, at, 15, -1, 20);
    // 64 values per 32 bytes: the first 32 in the low nibbles, the next 32 in the high ones.
    let q = at + 16;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; ++l) setB(q, l, getB(L, j + l) | (getB(L, j + l + 32) << 4));
      q += 32;
    }
  }
}

/** quantize_row_q5_K_ref over nb super-blocks. */
export function quantizeQ5K(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; ++i) {
    const at = dst + <usize>(i * Q5_K_BLOCK);
    const x = src + (<usize>(i * QK_K) << 2);
    quantizeScaleMinBlock(x, at, 31, -0.5, 15);
    // Low 4 bits as in Q4_K; the fifth bit of value n+j (n = 64k) is bit 2k of qh[j], of n+j+32 bit 2k+1.
    const qh = at + 16;
    memory.fill(qh, 0, 32);
    let m1 = 1;
    let m2 = 2;
    let q = at + 48;
    for (let n = 0; n < QK_K; n += 64) {
      for (let j = 0; j < 32; ++j) {
        let l1 = getB(L, n + j);
        let h = getB(qh, j);
        if (l1 > 15) {
          l1 -= 16;
          h |= m1;
        }
        let l2 = getB(L, n + j + 32);
        if (l2 > 15) {
          l2 -= 16;
          h |= m2;
        }
        setB(qh, j, h);
        setB(q, j, l1 | (l2 << 4));
      }
      m1 <<= 2;
      m2 <<= 2;
      q += 32;
    }
  }
}

/** quantize_row_q6_K_ref over nb super-blocks. */
export function quantizeQ6K(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; ++i) {
    const at = dst + <usize>(i * Q6_K_BLOCK);
    const x = src + (<usize>(i * QK_K) << 2);
    memory.copy(XS, x, <usize>(QK_K * 4));
    let maxScale: f32 = 0;
    let maxAbsScale: f32 = 0;
    for (let ib = 0; ib < QK_K / 16; ++ib) {
      const scale = makeQxQuants(16, 32, 16 * ib);
      setF(SCALES, ib, scale);
      const a = abs<f32>(scale);
      if (a > maxAbsScale) {
        maxAbsScale = a;
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      memory.fill(at, 0, <usize>Q6_K_BLOCK);
      continue;
    }
    const ql = at;
    const qh = at + 128;
    const sc = at + 192;
    const iscale: f32 = -128 / maxScale;
    const d0 = storeF16(at + 208, 1 / iscale);
    for (let ib = 0; ib < QK_K / 16; ++ib) {
      setB(sc, ib, min<i32>(127, nearestInt(iscale * getF(SCALES, ib)))); // int8_t store
    }
    for (let j = 0; j < QK_K / 16; ++j) {
      const d = d0 * <f32>load<i8>(sc + <usize>j);
      if (d == 0) continue;
      for (let ii = 0; ii < 16; ++ii) {
        const l = nearestInt(getF(x, 16 * j + ii) / d);
        setB(L, 16 * j + ii, clampI(l, -32, 31) + 32);
      }
    }
    // Per 128 values: low nibbles of 0-31|64-95 and 32-63|96-127 in ql, the 2 high bits of all four in qh.
    for (let j = 0, lq = ql, hq = qh; j < QK_K; j += 128, lq += 64, hq += 32) {
      for (let l = 0; l < 32; ++l) {
        const a = getB(L, j + l);
        const b = getB(L, j + l + 32);
        const c = getB(L, j + l + 64);
        const e = getB(L, j + l + 96);
        setB(lq, l, (a & 0xf) | ((c & 0xf) << 4));
        setB(lq, l + 32, (b & 0xf) | ((e & 0xf) << 4));
        setB(hq, l, (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
      }
    }
  }
}

// For tests: the float helpers, checked against ggml's edge cases and src/formats/fp16.ts.
export function nearestIntF32(v: f32): i32 {
  return nearestInt(v);
}
export function fp16Bits(v: f32): u32 {
  return fp32ToFp16(v);
}
export function fp16Value(h: u32): f32 {
  return fp16ToFp32(h);
}

/** Start of the caller's buffer (after the static scratch), 16-byte aligned. */
export function ioBase(): usize {
  return (__heap_base + 15) & ~(<usize>15);
}

/** Grows memory so `bytes` fit from ioBase(); returns false when the engine refuses. */
export function reserve(bytes: usize): bool {
  const end = ioBase() + bytes;
  const have = <usize>memory.size() << 16;
  if (end <= have) return true;
  return memory.grow(<i32>((end - have + 0xffff) >> 16)) >= 0;
}
