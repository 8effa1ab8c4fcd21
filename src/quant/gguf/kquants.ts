// K-quant types (Q4_K, Q5_K, Q6_K): super-blocks of 256 values, byte-identical to llama-quantize
// without an importance matrix (ggml's quantize_row_qN_K_ref), plus the matching dequantizers.
// The quantizers run in WebAssembly (kernels/assembly/kquants.ts); the dequantizers read the layouts here.
import { InputError } from '../../util/errors.js';
import { readF16 } from '../../formats/fp16.js';
import { rowQuantizer } from './kernels/wasm.js';

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

// Scratch for the dequantizers (single-threaded per instance).
const sm = new Uint8Array(2);

// Rows that are not whole super-blocks never reach these: llama-quantize's fallbacks pick another type.
const K_HINT = 'K-quants need rows of whole super-blocks; use a 32-block type (Q5_0, Q5_1, Q8_0) for this tensor, as llama-quantize falls back';
export const quantizeRowQ4_K = rowQuantizer('Q4_K', 'quantizeQ4K', QK_K, Q4_K_BLOCK_BYTES, K_HINT);
export const quantizeRowQ5_K = rowQuantizer('Q5_K', 'quantizeQ5K', QK_K, Q5_K_BLOCK_BYTES, K_HINT);
export const quantizeRowQ6_K = rowQuantizer('Q6_K', 'quantizeQ6K', QK_K, Q6_K_BLOCK_BYTES, K_HINT);

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
