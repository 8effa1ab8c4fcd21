// ggml's scale searches for K-quant sub-blocks (make_qkx2_quants, make_qx_quants in ggml-quants.c),
// in float32 arithmetic: every operation is rounded with Math.fround in the order C evaluates it,
// with no fused multiply-add (the reference build targets baseline x86-64, which has none).
import { nearestInt } from './round.js';

const fr = Math.fround;
const RDELTA = fr(0.1);
const MAGIC = 12582912; // see round.ts: in-range nearest_int inlined in the hot loops
/** x - min for the current min (recomputed only when the search moves min). */
const xm = new Float32Array(256);

function shiftBy(x: Float32Array, off: number, n: number, min: number): void {
  for (let i = 0; i < n; ++i) xm[i] = x[off + i]! - min; // the Float32Array store rounds like C's float
}
/** ggml's GROUP_MAX_EPS: below this max |x| a group counts as all zero. */
export const GROUP_MAX_EPS = fr(1e-15);

/**
 * Asymmetric scale + min for one sub-block (Q4_K, Q5_K): levels 0..nmax, x ~ scale*L - theMin.
 * Writes the levels to L[off..off+n) and [scale, theMin] to `out`; `weights` (of x[off..off+n)) and
 * `laux` are caller scratch of length n.
 */
export function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, off: number, weights: Float32Array,
  L: Uint8Array, laux: Uint8Array, rmin: number, nstep: number, out: Float32Array,
): void {
  let min = x[off]!;
  let max = x[off]!;
  let sumW = weights[0]!;
  let sumX = fr(sumW * x[off]!);
  for (let i = 1; i < n; ++i) {
    const xi = x[off + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i]!;
    sumW = fr(sumW + w);
    sumX = fr(sumX + fr(w * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; ++i) L[off + i] = 0;
    out[0] = 0;
    out[1] = -min;
    return;
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  shiftBy(x, off, n, min);
  for (let i = 0; i < n; ++i) {
    const xi = x[off + i]!;
    const l = nearestInt(fr(iscale * xm[i]!));
    const q = l < 0 ? 0 : l > nmax ? nmax : l;
    L[off + i] = q;
    const diff = fr(fr(fr(scale * q) + min) - xi);
    bestError = fr(bestError + fr(weights[i]! * fr(diff * diff)));
  }
  for (let is = 0; is <= nstep; ++is) {
    // `min` moves to the best candidate's min as the search goes, and ggml divides by the current range.
    iscale = fr(fr(fr(rmin + fr(RDELTA * is)) + nmax) / fr(max - min));
    // Neighbouring candidates often round to the same levels; then every sum, the error and the outcome
    // are those of the previous candidate (which was already kept or rejected), so skip the rest.
    let changed = is === 0;
    for (let i = 0; i < n; ++i) {
      const v = fr(iscale * xm[i]!);
      const s = fr(v + MAGIC);
      const l0 = s >= 8388608 && s < 16777216 ? s - MAGIC : nearestInt(v);
      const l = l0 < 0 ? 0 : l0 > nmax ? nmax : l0;
      if (laux[i] !== l) {
        laux[i] = l;
        changed = true;
      }
    }
    if (!changed) continue;
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; ++i) {
      const l = laux[i]!;
      const wl = fr(weights[i]! * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * x[off + i]!));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; ++i) {
        const diff = fr(fr(fr(thisScale * laux[i]!) + thisMin) - x[off + i]!);
        curError = fr(curError + fr(weights[i]! * fr(diff * diff)));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; ++i) L[off + i] = laux[i]!;
        bestError = curError;
        scale = thisScale;
        if (thisMin !== min) shiftBy(x, off, n, thisMin);
        min = thisMin;
      }
    }
  }
  out[0] = scale;
  out[1] = -min;
}

/**
 * Symmetric scale for one sub-block (Q6_K: make_qx_quants with rmse_type 1, no importance weights):
 * levels -nmax..nmax-1 stored as L + nmax, weights x^2, 18 nearby scales tried. Returns the scale.
 */
const lprev = new Int8Array(256);

export function makeQxQuants(n: number, nmax: number, x: Float32Array, off: number, L: Uint8Array): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; ++i) {
    const xi = x[off + i]!;
    const ax = Math.abs(xi);
    if (ax > amax) {
      amax = ax;
      max = xi;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; ++i) L[off + i] = 0;
    return 0;
  }
  let iscale = fr(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; ++i) {
    const xi = x[off + i]!;
    const l0 = nearestInt(fr(iscale * xi));
    const l = l0 < -nmax ? -nmax : l0 > nmax - 1 ? nmax - 1 : l0;
    L[off + i] = l + nmax;
    const w = fr(xi * xi);
    const wl = fr(w * l);
    sumlx = fr(sumlx + fr(fr(w * xi) * l));
    suml2 = fr(suml2 + fr(wl * l));
  }
  let scale = suml2 !== 0 ? fr(sumlx / suml2) : 0;
  let best = fr(scale * sumlx);
  for (let is = -9; is <= 9; ++is) {
    if (is === 0) continue;
    iscale = fr(-fr(nmax + fr(RDELTA * is)) / max);
    // Same levels as the previous candidate: same sums, and accepting them again would change nothing.
    let changed = is === -9;
    for (let i = 0; i < n; ++i) {
      const v = fr(iscale * x[off + i]!);
      const s = fr(v + MAGIC);
      const l0 = s >= 8388608 && s < 16777216 ? s - MAGIC : nearestInt(v);
      const l = l0 < -nmax ? -nmax : l0 > nmax - 1 ? nmax - 1 : l0;
      if (lprev[i] !== l) {
        lprev[i] = l;
        changed = true;
      }
    }
    if (!changed) continue;
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; ++i) {
      const xi = x[off + i]!;
      const l = lprev[i]!;
      const w = fr(xi * xi);
      sumlx = fr(sumlx + fr(fr(w * xi) * l));
      suml2 = fr(suml2 + fr(fr(w * l) * l));
    }
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      for (let i = 0; i < n; ++i) L[off + i] = nmax + lprev[i]!;
      scale = fr(sumlx / suml2);
      best = fr(scale * sumlx);
    }
  }
  return scale;
}
