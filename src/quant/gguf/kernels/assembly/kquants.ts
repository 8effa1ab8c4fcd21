// ggml's K-quant row quantizers quantize_row_q4_K_ref / q5_K / q6_K and their scale searches make_qkx2_quants / make_qx_quants.
// WebAssembly has native float32 arithmetic and never fuses a multiply-add, so written in C's order every
// operation rounds exactly as in llama-quantize's baseline x86-64 build: the bytes are ggml's.
// The searches also skip work ggml does twice; each shortcut says why it gives the same bytes.

import { clampI, getB, getF, hsum, nearestInt, setB, setF, storeF16 } from './float';

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

/**
 * Levels of 4 values at once: nearest_int(iscale * x) clamped to [lo, hi], lane by lane the same float32
 * operations as the scalar nearestInt (WebAssembly SIMD is IEEE per lane and has no fused multiply-add).
 */
@inline function levels4(viscale: v128, x: v128, vlo: v128, vhi: v128): v128 {
  return nearestInt4(f32x4.mul(viscale, x), vlo, vhi);
}

/** nearest_int of 4 values, clamped to [lo, hi]. */
@inline function nearestInt4(v: v128, vlo: v128, vhi: v128): v128 {
  return clampLevels(f32x4.add(v, f32x4.splat(12582912.0)), vlo, vhi);
}

/** The integers nearest_int reads from t = v + 1.5 * 2^23, clamped to [lo, hi]. */
@inline function clampLevels(t: v128, vlo: v128, vhi: v128): v128 {
  const l = i32x4.sub(v128.and(t, i32x4.splat(0x007fffff)), i32x4.splat(0x00400000));
  return i32x4.min_s(i32x4.max_s(l, vlo), vhi);
}

/** 16 levels in 0..255 from four i32x4 vectors, as bytes. */
@inline function bytes16(a: v128, b: v128, c: v128, d: v128): v128 {
  return i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(a, b), i16x8.narrow_i32x4_s(c, d));
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

/** x - min for the values in XS, rounded to float like C's `x[i] - min`. */
function shiftBy(n: i32, min: f32): void {
  for (let i = 0; i < n; ++i) setF(XM, i, getF(XS, i) - min);
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

/** Bit mask of the lanes (4 per vector, 16 in all) whose levels differ. */
@inline function changedMask(a0: v128, a1: v128, a2: v128, a3: v128, b0: v128, b1: v128, b2: v128, b3: v128): u32 {
  return <u32>i32x4.bitmask(i32x4.ne(a0, b0)) | (<u32>i32x4.bitmask(i32x4.ne(a1, b1)) << 4)
    | (<u32>i32x4.bitmask(i32x4.ne(a2, b2)) << 8) | (<u32>i32x4.bitmask(i32x4.ne(a3, b3)) << 12);
}

/** 16 levels in -32..31, stored as level + 32 bytes at L+off. */
@inline function storeLevels16(off: i32, l0: v128, l1: v128, l2: v128, l3: v128): void {
  const bias = i32x4.splat(32);
  v128.store(L + <usize>off, i8x16.narrow_i16x8_s(
    i16x8.narrow_i32x4_s(i32x4.add(l0, bias), i32x4.add(l1, bias)),
    i16x8.narrow_i32x4_s(i32x4.add(l2, bias), i32x4.add(l3, bias))));
}

/**
 * Symmetric scale for the 16 values at XS+off (Q6_K: make_qx_quants with nmax 32, rmse_type 1, no
 * importance weights): levels -32..31 stored as L + 32, weights x^2, 18 nearby scales tried. Returns the
 * scale. The 16 values, their weights and the levels live in registers (four vectors each); memory is
 * touched only for the sums in order, which 1 candidate in 9 needs.
 */
function makeQxQuants16(off: i32): f32 {
  const x = XS + (<usize>off << 2);
  const x0 = v128.load(x);
  const x1 = v128.load(x, 16);
  const x2 = v128.load(x, 32);
  const x3 = v128.load(x, 48);
  // The value of largest magnitude with its sign, the first on ties (C's strict `>`).
  const am = f32x4.pmax(f32x4.pmax(f32x4.abs(x0), f32x4.abs(x1)), f32x4.pmax(f32x4.abs(x2), f32x4.abs(x3)));
  const amax = max<f32>(max<f32>(f32x4.extract_lane(am, 0), f32x4.extract_lane(am, 1)), max<f32>(f32x4.extract_lane(am, 2), f32x4.extract_lane(am, 3)));
  if (amax < GROUP_MAX_EPS) {
    v128.store(L + <usize>off, i8x16.splat(0));
    return 0;
  }
  const va = f32x4.splat(amax);
  const hit = i32x4.bitmask(f32x4.eq(f32x4.abs(x0), va)) | (i32x4.bitmask(f32x4.eq(f32x4.abs(x1), va)) << 4)
    | (i32x4.bitmask(f32x4.eq(f32x4.abs(x2), va)) << 8) | (i32x4.bitmask(f32x4.eq(f32x4.abs(x3), va)) << 12);
  const max = getF(x, <i32>ctz(hit));
  const nmax: f32 = 32;
  const vlo = i32x4.splat(-32);
  const vhi = i32x4.splat(31);
  // Weights x^2 and x^3, each rounded as C rounds w and w*x.
  const w0 = f32x4.mul(x0, x0);
  const w1 = f32x4.mul(x1, x1);
  const w2 = f32x4.mul(x2, x2);
  const w3 = f32x4.mul(x3, x3);
  const wx0 = f32x4.mul(w0, x0);
  const wx1 = f32x4.mul(w1, x1);
  const wx2 = f32x4.mul(w2, x2);
  const wx3 = f32x4.mul(w3, x3);
  v128.store(WQ, w0); v128.store(WQ, w1, 16); v128.store(WQ, w2, 32); v128.store(WQ, w3, 48);
  v128.store(WXQ, wx0); v128.store(WXQ, wx1, 16); v128.store(WXQ, wx2, 32); v128.store(WXQ, wx3, 48);
  let viscale = f32x4.splat(-nmax / max);
  const c0 = levels4(viscale, x0, vlo, vhi);
  const c1 = levels4(viscale, x1, vlo, vhi);
  const c2 = levels4(viscale, x2, vlo, vhi);
  const c3 = levels4(viscale, x3, vlo, vhi);
  // The first guess's sums, in order, with their prefixes (entry i sums terms 0..i-1).
  v128.store(LV, c0); v128.store(LV, c1, 16); v128.store(LV, c2, 32); v128.store(LV, c3, 48);
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < 16; ++i) {
    const lf = <f32>load<i32>(LV + (<usize>i << 2));
    sumlx += getF(WXQ, i) * lf;
    suml2 += getF(WQ, i) * lf * lf;
    setF(PRE1, i + 1, sumlx);
    setF(PRE2, i + 1, suml2);
  }
  let scale: f32 = suml2 != 0 ? sumlx / suml2 : 0;
  let best = scale * sumlx;
  let b0 = c0;
  let b1 = c1;
  let b2 = c2;
  let b3 = c3;
  // PRE1/PRE2 hold the sums in order of the levels last summed in order; `dirty` is the first level
  // changed since then.
  let dirty = 16;
  // The candidates are compared by iscale * x + 1.5 * 2^23, the float nearest_int reads its integer
  // from: equal floats give equal levels, so half the candidates end after two operations per lane.
  // (Different floats may clamp to equal levels: such a candidate is evaluated again, as C does anyway.)
  const magic = f32x4.splat(12582912.0);
  let t0 = f32x4.add(f32x4.mul(viscale, x0), magic);
  let t1 = f32x4.add(f32x4.mul(viscale, x1), magic);
  let t2 = f32x4.add(f32x4.mul(viscale, x2), magic);
  let t3 = f32x4.add(f32x4.mul(viscale, x3), magic);
  for (let is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    viscale = f32x4.splat(-(nmax + RDELTA * <f32>is) / max);
    const u0 = f32x4.add(f32x4.mul(viscale, x0), magic);
    const u1 = f32x4.add(f32x4.mul(viscale, x1), magic);
    const u2 = f32x4.add(f32x4.mul(viscale, x2), magic);
    const u3 = f32x4.add(f32x4.mul(viscale, x3), magic);
    // Unchanged levels give the previous candidate's sums and outcome (the first candidate's "previous"
    // is the first guess, already `best`).
    if (!v128.any_true(v128.or(v128.or(i32x4.ne(u0, t0), i32x4.ne(u1, t1)), v128.or(i32x4.ne(u2, t2), i32x4.ne(u3, t3))))) continue;
    const first = <i32>ctz(changedMask(u0, u1, u2, u3, t0, t1, t2, t3));
    t0 = u0; t1 = u1; t2 = u2; t3 = u3;
    if (first < dirty) dirty = first;
    const l0 = clampLevels(u0, vlo, vhi);
    const l1 = clampLevels(u1, vlo, vhi);
    const l2 = clampLevels(u2, vlo, vhi);
    const l3 = clampLevels(u3, vlo, vhi);
    // Every term of sumlx (x^3 * l) has one sign, as does every term of suml2, so their sums by lane are
    // within 21 ulp of C's sums in order (15 for C's order, 6 by lane); the two sides of the test below
    // then differ from C's by under 70 ulp (4.2e-6 relative), so a candidate that loses by more than
    // 1e-5 by lane loses in C too. Accepting one needs the sums in order.
    const f0 = f32x4.convert_i32x4_s(l0);
    const f1 = f32x4.convert_i32x4_s(l1);
    const f2 = f32x4.convert_i32x4_s(l2);
    const f3 = f32x4.convert_i32x4_s(l3);
    const lx = f32x4.add(f32x4.add(f32x4.mul(wx0, f0), f32x4.mul(wx1, f1)), f32x4.add(f32x4.mul(wx2, f2), f32x4.mul(wx3, f3)));
    const ll = f32x4.add(
      f32x4.add(f32x4.mul(f32x4.mul(w0, f0), f0), f32x4.mul(f32x4.mul(w1, f1), f1)),
      f32x4.add(f32x4.mul(f32x4.mul(w2, f2), f2), f32x4.mul(f32x4.mul(w3, f3), f3)));
    const lxSum = hsum(lx);
    const l2Sum = hsum(ll);
    if (!(l2Sum > 0)) continue; // terms >= 0: zero by lane exactly when zero in order
    const rhs = best * l2Sum;
    if (rhs > 1e-30 && lxSum * lxSum < rhs * (1 - 1e-5)) continue;
    v128.store(LV, l0); v128.store(LV, l1, 16); v128.store(LV, l2, 32); v128.store(LV, l3, 48);
    sumlx = getF(PRE1, dirty);
    suml2 = getF(PRE2, dirty);
    for (let i = dirty; i < 16; ++i) {
      const lf = <f32>load<i32>(LV + (<usize>i << 2));
      sumlx += getF(WXQ, i) * lf;
      suml2 += getF(WQ, i) * lf * lf;
      setF(PRE1, i + 1, sumlx);
      setF(PRE2, i + 1, suml2);
    }
    dirty = 16;
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      b0 = l0; b1 = l1; b2 = l2; b3 = l3;
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  storeLevels16(off, b0, b1, b2, b3);
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
    // nearest_int((x + dm) / d) clamped to 0..nmax, 16 values at a time (division is exact per lane).
    const vdm = f32x4.splat(dm);
    const vd = f32x4.splat(d);
    const vlo = i32x4.splat(0);
    const vhi = i32x4.splat(nmax);
    for (let k = 0; k < 32; k += 16) {
      const p = x + (<usize>(32 * j + k) << 2);
      v128.store(L + <usize>(32 * j + k), bytes16(
        nearestInt4(f32x4.div(f32x4.add(v128.load(p), vdm), vd), vlo, vhi),
        nearestInt4(f32x4.div(f32x4.add(v128.load(p, 16), vdm), vd), vlo, vhi),
        nearestInt4(f32x4.div(f32x4.add(v128.load(p, 32), vdm), vd), vlo, vhi),
        nearestInt4(f32x4.div(f32x4.add(v128.load(p, 48), vdm), vd), vlo, vhi)));
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
    for (let j = 0; j < QK_K; j += 32) {
      const lo = L + <usize>(j << 1);
      v128.store(at + 16 + <usize>j, v128.or(v128.load(lo), i8x16.shl(v128.load(lo, 32), 4)));
      v128.store(at + 32 + <usize>j, v128.or(v128.load(lo, 16), i8x16.shl(v128.load(lo, 48), 4)));
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
    const nib = i8x16.splat(0x0f);
    for (let half = 0; half < 32; half += 16) {
      let h = i8x16.splat(0);
      for (let n = 0, k = 0; n < QK_K; n += 64, k += 2) {
        const l1 = v128.load(L + <usize>(n + half));
        const l2 = v128.load(L + <usize>(n + half + 32));
        v128.store(at + 48 + <usize>((n >> 1) + half), v128.or(v128.and(l1, nib), i8x16.shl(l2, 4)));
        // Levels are 0..31: bit 4 shifted down to bit 0, then up to its place.
        h = v128.or(h, v128.or(i8x16.shl(i8x16.shr_u(l1, 4), k), i8x16.shl(i8x16.shr_u(l2, 4), k + 1)));
      }
      v128.store(at + 16 + <usize>half, h);
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
      const scale = makeQxQuants16(16 * ib);
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
    const vlo = i32x4.splat(-32);
    const vhi = i32x4.splat(31);
    for (let j = 0; j < QK_K / 16; ++j) {
      const d = d0 * <f32>load<i8>(sc + <usize>j);
      if (d == 0) continue; // C keeps the search's levels for this group
      const vd = f32x4.splat(d);
      const p = x + (<usize>(16 * j) << 2);
      storeLevels16(16 * j,
        nearestInt4(f32x4.div(v128.load(p), vd), vlo, vhi), nearestInt4(f32x4.div(v128.load(p, 16), vd), vlo, vhi),
        nearestInt4(f32x4.div(v128.load(p, 32), vd), vlo, vhi), nearestInt4(f32x4.div(v128.load(p, 48), vd), vlo, vhi));
    }
    // Per 128 values: low nibbles of 0-31|64-95 and 32-63|96-127 in ql, the 2 high bits of all four in qh.
    const nib = i8x16.splat(0x0f);
    for (let j = 0; j < QK_K; j += 128) {
      const lq = ql + <usize>(j >> 1);
      const hq = qh + <usize>(j >> 2);
      for (let l = 0; l < 32; l += 16) {
        const a = v128.load(L + <usize>(j + l));
        const b = v128.load(L + <usize>(j + l + 32));
        const c = v128.load(L + <usize>(j + l + 64));
        const e = v128.load(L + <usize>(j + l + 96));
        v128.store(lq + <usize>l, v128.or(v128.and(a, nib), i8x16.shl(c, 4)));
        v128.store(lq + <usize>(l + 32), v128.or(v128.and(b, nib), i8x16.shl(e, 4)));
        v128.store(hq + <usize>l, v128.or(
          v128.or(i8x16.shr_u(a, 4), i8x16.shl(i8x16.shr_u(b, 4), 2)),
          v128.or(i8x16.shl(i8x16.shr_u(c, 4), 4), i8x16.shl(i8x16.shr_u(e, 4), 6))));
      }
    }
  }
}
