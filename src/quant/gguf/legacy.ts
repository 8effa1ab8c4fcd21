// ggml's 32-value block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): the reference quantizers of ggml-quants.c
// (quantize_row_*_ref, what llama-quantize uses without an importance matrix) run in WebAssembly
// (kernels/assembly/legacy.ts); the dequantizers read the block layouts here.
import { readF16 } from '../../formats/fp16.js';
import { rowQuantizer } from './kernels/wasm.js';

const fr = Math.fround;
const QK = 32;

export const quantizeRowQ4_0 = rowQuantizer('Q4_0', 'quantizeQ4_0', QK, 18);
export const quantizeRowQ4_1 = rowQuantizer('Q4_1', 'quantizeQ4_1', QK, 20);
export const quantizeRowQ5_0 = rowQuantizer('Q5_0', 'quantizeQ5_0', QK, 22);
export const quantizeRowQ5_1 = rowQuantizer('Q5_1', 'quantizeQ5_1', QK, 24);
export const quantizeRowQ8_0 = rowQuantizer('Q8_0', 'quantizeQ8_0', QK, 34);

export function dequantizeRowQ8_0(src: Uint8Array, dst: Float32Array): void {
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 34;
    const d = readF16(src, o);
    for (let j = 0; j < QK; j++) dst[i * QK + j] = fr(((src[o + 2 + j]! << 24) >> 24) * d);
  }
}

export function dequantizeRowQ4_0(src: Uint8Array, dst: Float32Array): void {
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 18;
    const d = readF16(src, o);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 2 + j]!;
      dst[i * QK + j] = fr(((b & 0x0f) - 8) * d);
      dst[i * QK + 16 + j] = fr(((b >>> 4) - 8) * d);
    }
  }
}

export function dequantizeRowQ4_1(src: Uint8Array, dst: Float32Array): void {
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 20;
    const d = readF16(src, o);
    const m = readF16(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 4 + j]!;
      dst[i * QK + j] = fr(fr((b & 0x0f) * d) + m);
      dst[i * QK + 16 + j] = fr(fr((b >>> 4) * d) + m);
    }
  }
}

function getU32(src: Uint8Array, at: number): number {
  return (src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24)) >>> 0;
}

export function dequantizeRowQ5_0(src: Uint8Array, dst: Float32Array): void {
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 22;
    const d = readF16(src, o);
    const qh = getU32(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 6 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      dst[i * QK + j] = fr((((b & 0x0f) | h0) - 16) * d);
      dst[i * QK + 16 + j] = fr((((b >>> 4) | h1) - 16) * d);
    }
  }
}

export function dequantizeRowQ5_1(src: Uint8Array, dst: Float32Array): void {
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 24;
    const d = readF16(src, o);
    const m = readF16(src, o + 2);
    const qh = getU32(src, o + 4);
    for (let j = 0; j < 16; j++) {
      const b = src[o + 8 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      dst[i * QK + j] = fr(fr(((b & 0x0f) | h0) * d) + m);
      dst[i * QK + 16 + j] = fr(fr(((b >>> 4) | h1) * d) + m);
    }
  }
}
