// K-quant kernels (Q4_K, Q5_K, Q6_K): super-blocks of 256 values, byte-identical to llama-quantize
// without an importance matrix (ggml's quantize_row_qN_K_ref), plus the matching dequantizers.
// The float32 arithmetic and rounding live in kquants/; this file holds the block layouts.
import { InputError } from '../../util/errors.js';
import { readF16, writeF16 } from '../../formats/fp16.js';
import { nearestInt } from './kquants/round.js';
import { GROUP_MAX_EPS, makeQkx2Quants, makeQxQuants } from './kquants/search.js';

const fr = Math.fround;

/** Values per super-block (ggml's QK_K). */
export const QK_K = 256;
export const Q4_K_BLOCK_BYTES = 144; // d, dmin, scales[12], qs[128]
export const Q5_K_BLOCK_BYTES = 176; // d, dmin, scales[12], qh[32], qs[128]
export const Q6_K_BLOCK_BYTES = 210; // ql[128], qh[64], scales[16] (int8), d

function checkSizes(kind: string, values: number, bytes: number, blockBytes: number): number {
  if (values % QK_K !== 0) {
    throw new InputError(`${kind}: a row of ${values} values is not a multiple of ${QK_K}`, {
      expected: `a row length divisible by ${QK_K}`,
      hint: 'K-quants need rows of whole super-blocks; use a 32-block type (Q5_0, Q5_1, Q8_0) for this tensor, as llama-quantize falls back',
    });
  }
  const nb = values / QK_K;
  if (bytes !== nb * blockBytes) {
    throw new InputError(`${kind}: ${values} values need ${nb * blockBytes} bytes of blocks, got a buffer of ${bytes}`, {
      expected: `${blockBytes} bytes per ${QK_K} values`,
    });
  }
  return nb;
}



/** ggml's get_scale_min_k4: 6-bit scale and min of sub-block j from the 12 packed bytes at `at`. */
function scaleMinK4(q: Uint8Array, at: number, j: number, out: Uint8Array): void {
  if (j < 4) {
    out[0] = q[at + j]! & 63;
    out[1] = q[at + j + 4]! & 63;
  } else {
    out[0] = (q[at + j + 4]! & 0xf) | ((q[at + j - 4]! >> 6) << 4);
    out[1] = (q[at + j + 4]! >> 4) | ((q[at + j]! >> 6) << 4);
  }
}

// Scratch shared by the single-threaded kernels (each call fills what it reads).
const L = new Uint8Array(QK_K);
const laux = new Uint8Array(32);
const weights = new Float32Array(32);
const scales = new Float32Array(QK_K / 16);
const mins = new Float32Array(QK_K / 32);
const pair = new Float32Array(2);
const sm = new Uint8Array(2);

/**
 * The part Q4_K and Q5_K share: per 32-value sub-block an asymmetric (scale, min) search, both quantized
 * to 6 bits against fp16 super-scales d and dmin, then the levels recomputed from the stored scales.
 * Writes d, dmin and scales[12] at `at`, and the levels to L.
 */
function quantizeScaleMinBlock(x: Float32Array, dst: Uint8Array, at: number, nmax: number, rmin: number, nstep: number): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < QK_K / 32; ++j) {
    let sumX2 = 0;
    for (let l = 0; l < 32; ++l) sumX2 = fr(sumX2 + fr(x[32 * j + l]! * x[32 * j + l]!));
    const avX = fr(Math.sqrt(fr(sumX2 / 32)));
    for (let l = 0; l < 32; ++l) weights[l] = avX + Math.abs(x[32 * j + l]!); // Float32Array store rounds
    makeQkx2Quants(32, nmax, x, 32 * j, weights, L, laux, rmin, nstep, pair);
    scales[j] = pair[0]!;
    mins[j] = pair[1]!;
    if (scales[j]! > maxScale) maxScale = scales[j]!;
    if (mins[j]! > maxMin) maxMin = mins[j]!;
  }
  const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
  const sc = at + 4;
  for (let j = 0; j < QK_K / 32; ++j) {
    // uint8_t in C: the int wraps before the clamp to 63.
    const ls = Math.min(63, nearestInt(fr(invScale * scales[j]!)) & 0xff);
    const lm = Math.min(63, nearestInt(fr(invMin * mins[j]!)) & 0xff);
    if (j < 4) {
      dst[sc + j] = ls;
      dst[sc + j + 4] = lm;
    } else {
      dst[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      dst[sc + j - 4]! |= (ls >> 4) << 6;
      dst[sc + j]! |= (lm >> 4) << 6;
    }
  }
  writeF16(dst, at, fr(maxScale / 63));
  writeF16(dst, at + 2, fr(maxMin / 63));
  const d0 = readF16(dst, at);
  const dmin0 = readF16(dst, at + 2);
  for (let j = 0; j < QK_K / 32; ++j) {
    scaleMinK4(dst, sc, j, sm);
    const d = fr(d0 * sm[0]!);
    if (d === 0) continue;
    const dm = fr(dmin0 * sm[1]!);
    for (let ii = 0; ii < 32; ++ii) {
      const l = nearestInt(fr(fr(x[32 * j + ii]! + dm) / d));
      L[32 * j + ii] = l < 0 ? 0 : l > nmax ? nmax : l;
    }
  }
}

export function quantizeRowQ4_K(src: Float32Array, dst: Uint8Array): void {
  const nb = checkSizes('Q4_K', src.length, dst.length, Q4_K_BLOCK_BYTES);
  for (let i = 0; i < nb; ++i) {
    const at = i * Q4_K_BLOCK_BYTES;
    const x = src.subarray(i * QK_K, (i + 1) * QK_K);
    quantizeScaleMinBlock(x, dst, at, 15, -1, 20);
    // 64 values per 32 bytes: the first 32 in the low nibbles, the next 32 in the high ones.
    let q = at + 16;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; ++l) dst[q + l] = L[j + l]! | (L[j + l + 32]! << 4);
      q += 32;
    }
  }
}

export function quantizeRowQ5_K(src: Float32Array, dst: Uint8Array): void {
  const nb = checkSizes('Q5_K', src.length, dst.length, Q5_K_BLOCK_BYTES);
  for (let i = 0; i < nb; ++i) {
    const at = i * Q5_K_BLOCK_BYTES;
    const x = src.subarray(i * QK_K, (i + 1) * QK_K);
    quantizeScaleMinBlock(x, dst, at, 31, -0.5, 15);
    // Low 4 bits as in Q4_K; the fifth bit of value n+j (n = 64k) is bit 2k of qh[j], of n+j+32 bit 2k+1.
    const qh = at + 16;
    const ql = at + 48;
    dst.fill(0, qh, qh + 32);
    let m1 = 1;
    let m2 = 2;
    let q = ql;
    for (let n = 0; n < QK_K; n += 64) {
      for (let j = 0; j < 32; ++j) {
        let l1 = L[n + j]!;
        if (l1 > 15) {
          l1 -= 16;
          dst[qh + j]! |= m1;
        }
        let l2 = L[n + j + 32]!;
        if (l2 > 15) {
          l2 -= 16;
          dst[qh + j]! |= m2;
        }
        dst[q + j] = l1 | (l2 << 4);
      }
      m1 <<= 2;
      m2 <<= 2;
      q += 32;
    }
  }
}

export function quantizeRowQ6_K(src: Float32Array, dst: Uint8Array): void {
  const nb = checkSizes('Q6_K', src.length, dst.length, Q6_K_BLOCK_BYTES);
  for (let i = 0; i < nb; ++i) {
    const at = i * Q6_K_BLOCK_BYTES;
    const x = src.subarray(i * QK_K, (i + 1) * QK_K);
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < QK_K / 16; ++ib) {
      const scale = makeQxQuants(16, 32, x, 16 * ib, L);
      scales[ib] = scale;
      const abs = Math.abs(scale);
      if (abs > maxAbsScale) {
        maxAbsScale = abs;
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      dst.fill(0, at, at + Q6_K_BLOCK_BYTES);
      continue;
    }
    const ql = at;
    const qh = at + 128;
    const sc = at + 192;
    const iscale = fr(-128 / maxScale);
    writeF16(dst, at + 208, fr(1 / iscale));
    const d0 = readF16(dst, at + 208);
    for (let ib = 0; ib < QK_K / 16; ++ib) {
      const s = Math.min(127, nearestInt(fr(iscale * scales[ib]!)));
      dst[sc + ib] = s & 0xff; // int8_t store
    }
    for (let j = 0; j < QK_K / 16; ++j) {
      const s = (dst[sc + j]! << 24) >> 24;
      const d = fr(d0 * s);
      if (d === 0) continue;
      for (let ii = 0; ii < 16; ++ii) {
        const l = nearestInt(fr(x[16 * j + ii]! / d));
        L[16 * j + ii] = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
      }
    }
    // Per 128 values: low nibbles of 0-31|64-95 and 32-63|96-127 in ql, the 2 high bits of all four in qh.
    for (let j = 0, lq = ql, hq = qh; j < QK_K; j += 128, lq += 64, hq += 32) {
      for (let l = 0; l < 32; ++l) {
        const a = L[j + l]!;
        const b = L[j + l + 32]!;
        const c = L[j + l + 64]!;
        const e = L[j + l + 96]!;
        dst[lq + l] = (a & 0xf) | ((c & 0xf) << 4);
        dst[lq + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
        dst[hq + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
      }
    }
  }
}

function checkDequant(kind: string, bytes: number, values: number, blockBytes: number): number {
  return checkSizes(kind, values, bytes, blockBytes);
}

export function dequantizeRowQ4_K(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDequant('Q4_K', src.length, dst.length, Q4_K_BLOCK_BYTES);
  let y = 0;
  for (let i = 0; i < nb; ++i) {
    const at = i * Q4_K_BLOCK_BYTES;
    const d = readF16(src, at);
    const min = readF16(src, at + 2);
    let q = at + 16;
    for (let j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
      scaleMinK4(src, at + 4, is, sm);
      const d1 = fr(d * sm[0]!);
      const m1 = fr(min * sm[1]!);
      scaleMinK4(src, at + 4, is + 1, sm);
      const d2 = fr(d * sm[0]!);
      const m2 = fr(min * sm[1]!);
      for (let l = 0; l < 32; ++l) dst[y++] = fr(d1 * (src[q + l]! & 0xf)) - m1;
      for (let l = 0; l < 32; ++l) dst[y++] = fr(d2 * (src[q + l]! >> 4)) - m2;
    }
  }
}

export function dequantizeRowQ5_K(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDequant('Q5_K', src.length, dst.length, Q5_K_BLOCK_BYTES);
  let y = 0;
  for (let i = 0; i < nb; ++i) {
    const at = i * Q5_K_BLOCK_BYTES;
    const d = readF16(src, at);
    const min = readF16(src, at + 2);
    const qh = at + 16;
    let ql = at + 48;
    let u1 = 1;
    let u2 = 2;
    for (let j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      scaleMinK4(src, at + 4, is, sm);
      const d1 = fr(d * sm[0]!);
      const m1 = fr(min * sm[1]!);
      scaleMinK4(src, at + 4, is + 1, sm);
      const d2 = fr(d * sm[0]!);
      const m2 = fr(min * sm[1]!);
      for (let l = 0; l < 32; ++l) dst[y++] = fr(d1 * ((src[ql + l]! & 0xf) + (src[qh + l]! & u1 ? 16 : 0))) - m1;
      for (let l = 0; l < 32; ++l) dst[y++] = fr(d2 * ((src[ql + l]! >> 4) + (src[qh + l]! & u2 ? 16 : 0))) - m2;
    }
  }
}

export function dequantizeRowQ6_K(src: Uint8Array, dst: Float32Array): void {
  const nb = checkDequant('Q6_K', src.length, dst.length, Q6_K_BLOCK_BYTES);
  let y = 0;
  for (let i = 0; i < nb; ++i) {
    const at = i * Q6_K_BLOCK_BYTES;
    const d = readF16(src, at + 208);
    for (let n = 0, ql = at, qh = at + 128, sc = at + 192; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8) {
      for (let l = 0; l < 32; ++l) {
        const is = l >> 4;
        const h = src[qh + l]!;
        const q1 = ((src[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        // scales are int8: sign-extend the stored byte.
        dst[y + l] = fr(d * ((src[sc + is]! << 24) >> 24)) * q1;
        dst[y + l + 32] = fr(d * ((src[sc + is + 2]! << 24) >> 24)) * q2;
        dst[y + l + 64] = fr(d * ((src[sc + is + 4]! << 24) >> 24)) * q3;
        dst[y + l + 96] = fr(d * ((src[sc + is + 6]! << 24) >> 24)) * q4;
      }
      y += 128;
    }
  }
}
