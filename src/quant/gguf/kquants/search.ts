// ggml's scale searches for K-quant sub-blocks (make_qkx2_quants, make_qx_quants in ggml-quants.c),
// in float32 arithmetic: every operation is rounded with Math.fround in the order C evaluates it,
// with no fused multiply-add (the reference build targets baseline x86-64, which has none).
// Speed-ups below all give the same bytes as ggml; each says why.
import { nearestInt } from './round.js';

const fr = Math.fround;
const RDELTA = fr(0.1);
/**
 * 1.5 * 2^52: (v + DMAGIC) - DMAGIC rounds a double half-to-even. For a float32 v with |v| < 2^22 that is
 * exactly ggml's nearest_int (1.5 * 2^23 added in float32), without two float32 conversions.
 */
const DMAGIC = 6755399441055744;
const IN_RANGE = 4194304; // 2^22

// Module-level scratch (the kernels run one block at a time per thread). Hot loops read these rather than
// the caller's arrays: V8 then knows their type and skips the per-access checks.
/** The sub-block's values, its weights, and x - min for the current min (recomputed when min moves). */
const xs = new Float32Array(256);
const ws = new Float32Array(256);
const xm = new Float32Array(256);
/**
 * Partial sums of the last evaluated candidate: entry i sums elements 0..i-1. A candidate whose first new
 * level is at index k has the same first k terms, and float32 sums taken in order depend only on those,
 * so the sums resume from entry k.
 */
const pre1 = new Float32Array(257);
const pre2 = new Float32Array(257);
const pre3 = new Float32Array(257);

// make_qx_quants tries 18 candidate scales (is = -9..-1, 1..9 as c = 0..17). For one value, its level is
// a monotone function of c: iscale is monotone in `is` and every step after it (float32 rounding, the
// product with x, nearest_int while |v| < 2^22, the clamp) is monotone. So a value's levels over all candidates follow from the levels at
// the two ends plus a bisection between them: a few scale evaluations per value instead of one per
// candidate. They are kept as events "value i takes level l at candidate c", listed per candidate.
const QX_CANDIDATES = 18;
const qxScale = new Float64Array(QX_CANDIDATES);
const evHead = new Int32Array(QX_CANDIDATES);
const evFirst = new Int32Array(QX_CANDIDATES);
const evNext = new Int32Array(256 * QX_CANDIDATES);
const evElem = new Int32Array(256 * QX_CANDIDATES);
const evLevel = new Int32Array(256 * QX_CANDIDATES);
const stack = new Int32Array(4 * 2 * QX_CANDIDATES);
let nEvents = 0;

/** ggml's GROUP_MAX_EPS: below this max |x| a group counts as all zero. */
export const GROUP_MAX_EPS = fr(1e-15);

function shiftBy(n: number, min: number): void {
  for (let i = 0; i < n; ++i) xm[i] = xs[i]! - min; // the Float32Array store rounds like C's float
}


/** ggml's level (nearest_int, then clamp to 0..nmax) of value x - min = xmi under one scale. */
function qkLevel(iscale: number, xmi: number, nmax: number): number {
  const v = fr(iscale * xmi);
  const l = v > -IN_RANGE && v < IN_RANGE ? ((v + DMAGIC) - DMAGIC) | 0 : nearestInt(v);
  return l < 0 ? 0 : l > nmax ? nmax : l;
}

/** Events of value i between candidates cLo and cHi (levels lLo != lHi known), by bisection. */
function bisect(i: number, cLo0: number, lLo0: number, cHi0: number, lHi0: number, xi: number, lo: number, hi: number): void {
  stack[0] = cLo0;
  stack[1] = lLo0;
  stack[2] = cHi0;
  stack[3] = lHi0;
  let sp = 4;
  while (sp > 0) {
    sp -= 4;
    const cLo = stack[sp]!;
    const lLo = stack[sp + 1]!;
    const cHi = stack[sp + 2]!;
    const lHi = stack[sp + 3]!;
    if (cHi === cLo + 1) {
      addEvent(cHi, i, lHi);
      continue;
    }
    const mid = (cLo + cHi) >> 1;
    const lM = qxLevel(qxScale[mid]!, xi, lo, hi);
    if (lM !== lHi) {
      stack[sp] = mid;
      stack[sp + 1] = lM;
      stack[sp + 2] = cHi;
      stack[sp + 3] = lHi;
      sp += 4;
    }
    if (lM !== lLo) {
      stack[sp] = cLo;
      stack[sp + 1] = lLo;
      stack[sp + 2] = mid;
      stack[sp + 3] = lM;
      sp += 4;
    }
  }
}

/**
 * Asymmetric scale + min for one sub-block (Q4_K, Q5_K): levels 0..nmax, x ~ scale*L - theMin.
 * Writes the levels to L[off..off+n) and [scale, theMin] to `out`; `weights` (of x[off..off+n)) and
 * `laux` are caller scratch of length n.
 */
export function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, off: number, weights: Float32Array,
  L: Uint8Array, laux: Uint8Array, rmin: number, nstep: number, out: Float32Array,
): void {
  for (let i = 0; i < n; ++i) {
    xs[i] = x[off + i]!;
    ws[i] = weights[i]!;
  }
  let min = xs[0]!;
  let max = xs[0]!;
  let sumW = ws[0]!;
  let sumX = fr(sumW * xs[0]!);
  for (let i = 1; i < n; ++i) {
    const xi = xs[i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = ws[i]!;
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
  shiftBy(n, min);
  for (let i = 0; i < n; ++i) {
    const xi = xs[i]!;
    const l = nearestInt(fr(iscale * xm[i]!));
    const q = l < 0 ? 0 : l > nmax ? nmax : l;
    L[off + i] = q;
    const diff = fr(fr(fr(scale * q) + min) - xi);
    bestError = fr(bestError + fr(ws[i]! * fr(diff * diff)));
  }
  for (let is = 0; is <= nstep; ++is) {
    // `min` moves to the best candidate's min as the search goes, and ggml divides by the current range.
    iscale = fr(fr(fr(rmin + fr(RDELTA * is)) + nmax) / fr(max - min));
    // Neighbouring candidates often round to the same levels; then every sum, the error and the outcome
    // are those of the previous candidate (which was already kept or rejected), so skip the rest.
    // `first` is the first index whose level changed (laux holds stale levels before the first candidate).
    let first = is === 0 ? 0 : n;
    for (let i = 0; i < n; ++i) {
      const l = qkLevel(iscale, xm[i]!, nmax);
      if (laux[i] !== l) {
        laux[i] = l;
        if (first === n) first = i;
      }
    }
    if (first === n) continue;
    let sumL = pre1[first]!;
    let sumL2 = pre2[first]!;
    let sumXL = pre3[first]!;
    for (let i = first; i < n; ++i) {
      const l = laux[i]!;
      const wl = fr(ws[i]! * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * xs[i]!));
      pre1[i + 1] = sumL;
      pre2[i + 1] = sumL2;
      pre3[i + 1] = sumXL;
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      // The error only grows as terms (w * diff^2 >= 0) are added, float32 rounding included, so once it
      // reaches bestError this candidate is rejected whatever the rest adds.
      let curError = 0;
      let i = 0;
      for (; i < n; ++i) {
        const diff = fr(fr(fr(thisScale * laux[i]!) + thisMin) - xs[i]!);
        curError = fr(curError + fr(ws[i]! * fr(diff * diff)));
        if (curError >= bestError) break;
      }
      if (i === n && curError < bestError) {
        for (let k = 0; k < n; ++k) L[off + k] = laux[k]!;
        bestError = curError;
        scale = thisScale;
        if (thisMin !== min) shiftBy(n, thisMin);
        min = thisMin;
      }
    }
  }
  out[0] = scale;
  out[1] = -min;
}

/** Levels of the last evaluated candidate of makeQxQuants, and x*x and x*x*x per value (candidate-independent). */
const lprev = new Int8Array(256);
const wq = new Float32Array(256);
const wxq = new Float32Array(256);


/** ggml's level for one value and scale; |v| <= nmax + 1 here (|x| <= |max|), where nearest_int is round-half-even. */
function qxLevel(iscale: number, xi: number, lo: number, hi: number): number {
  const v = fr(iscale * xi);
  const l = ((v + DMAGIC) - DMAGIC) | 0; // NaN gives 0, as ggml's nearest_int does
  return l < lo ? lo : l > hi ? hi : l;
}

function addEvent(c: number, i: number, l: number): void {
  const k = nEvents++;
  evElem[k] = i;
  evLevel[k] = l;
  evNext[k] = evHead[c]!;
  evHead[c] = k;
  if (evFirst[c] > i) evFirst[c] = i;
}

/**
 * Symmetric scale for one sub-block (Q6_K: make_qx_quants with rmse_type 1, no importance weights):
 * levels -nmax..nmax-1 stored as L + nmax, weights x^2, 18 nearby scales tried. Returns the scale.
 */
export function makeQxQuants(n: number, nmax: number, x: Float32Array, off: number, L: Uint8Array): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; ++i) {
    const xi = x[off + i]!;
    xs[i] = xi;
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
  const lo = -nmax | 0;
  const hi = (nmax - 1) | 0;
  let iscale = fr(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; ++i) {
    const xi = xs[i]!;
    wq[i] = xi * xi; // the Float32Array stores round like C's float
    wxq[i] = wq[i]! * xi;
    const l0 = nearestInt(fr(iscale * xi));
    const l = l0 < lo ? lo : l0 > hi ? hi : l0;
    lprev[i] = l;
    L[off + i] = l + nmax;
    sumlx = fr(sumlx + fr(wxq[i]! * l));
    suml2 = fr(suml2 + fr(fr(wq[i]! * l) * l));
    pre1[i + 1] = sumlx;
    pre2[i + 1] = suml2;
  }
  let scale = suml2 !== 0 ? fr(sumlx / suml2) : 0;
  let best = fr(scale * sumlx);

  for (let c = 0; c < QX_CANDIDATES; ++c) {
    const is = c < 9 ? c - 9 : c - 8;
    qxScale[c] = fr(-fr(nmax + fr(RDELTA * is)) / max);
    evHead[c] = -1;
    evFirst[c] = n;
  }
  nEvents = 0;
  const last = QX_CANDIDATES - 1;
  for (let i = 0; i < n; ++i) {
    const xi = xs[i]!;
    const lA = qxLevel(qxScale[0]!, xi, lo, hi);
    if (lA !== lprev[i]) addEvent(0, i, lA); // the first candidate follows the first guess
    const lB = qxLevel(qxScale[last]!, xi, lo, hi);
    if (lA !== lB) bisect(i, 0, lA, last, lB, xi, lo, hi);
  }

  for (let c = 0; c < QX_CANDIDATES; ++c) {
    // No value changes level: same sums as the previous candidate, and accepting them again would change
    // nothing (the first candidate's "previous" is the first guess, whose outcome is already `best`).
    const first = evFirst[c]!;
    if (first === n) continue;
    for (let k = evHead[c]!; k >= 0; k = evNext[k]!) lprev[evElem[k]!] = evLevel[k]!;
    sumlx = pre1[first]!;
    suml2 = pre2[first]!;
    for (let i = first; i < n; ++i) {
      const l = lprev[i]!;
      sumlx = fr(sumlx + fr(wxq[i]! * l));
      suml2 = fr(suml2 + fr(fr(wq[i]! * l) * l));
      pre1[i + 1] = sumlx;
      pre2[i + 1] = suml2;
    }
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      for (let i = 0; i < n; ++i) L[off + i] = nmax + lprev[i]!;
      scale = fr(sumlx / suml2);
      best = fr(scale * sumlx);
    }
  }
  return scale;
}
