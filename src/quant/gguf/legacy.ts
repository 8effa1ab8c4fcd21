// ggml's 32-element block types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): the reference quantizers of ggml-quants.c
// (quantize_row_*_ref), which llama-quantize uses when no importance matrix is given. Every float op is
// rounded to float32 (Math.fround) in ggml's order, so the bytes match the C code exactly.
import { readF16, writeF16 } from '../../formats/fp16.js';

const fr = Math.fround;
const QK = 32;
const FLT_MAX = 3.4028234663852886e38;

function checkRows(kind: string, src: Float32Array, dst: Uint8Array, bytesPerBlock: number): number {
  if (src.length % QK !== 0) throw new RangeError(`${kind}: ${src.length} values is not a multiple of ${QK}`);
  const nb = src.length / QK;
  if (dst.length < nb * bytesPerBlock) throw new RangeError(`${kind}: output holds ${dst.length} bytes, needs ${nb * bytesPerBlock}`);
  return nb;
}



/** Q8_0: d = amax/127, q = roundf(x/d) (half away from zero). 34 bytes per 32 values. */
export function quantizeRowQ8_0(src: Float32Array, dst: Uint8Array): void {
  const nb = checkRows('Q8_0', src, dst, 34);
  for (let i = 0; i < nb; i++) {
    const base = i * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) {
      const a = Math.abs(src[base + j]!);
      if (a > amax) amax = a;
    }
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    const o = i * 34;
    writeF16(dst, o, d);
    for (let j = 0; j < QK; j++) {
      const x = fr(src[base + j]! * id);
      // roundf: half away from zero; |x| + 0.5 is exact in double for float32 x.
      const q = x < 0 ? -Math.floor(0.5 - x) : Math.floor(x + 0.5);
      dst[o + 2 + j] = q & 0xff;
    }
  }
}

export function dequantizeRowQ8_0(src: Uint8Array, dst: Float32Array): void {
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 34;
    const d = readF16(src, o);
    for (let j = 0; j < QK; j++) dst[i * QK + j] = fr(((src[o + 2 + j]! << 24) >> 24) * d);
  }
}

/** Signed value of largest magnitude (first one wins on ties, as ggml's strict `<`). */
function signedAbsMax(src: Float32Array, base: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < QK; j++) {
    const v = src[base + j]!;
    const a = Math.abs(v);
    if (amax < a) {
      amax = a;
      max = v;
    }
  }
  return max;
}

/** Q4_0: d = max/-8, q = min(15, trunc(x/d + 8.5)); byte j = value j (low nibble) | value j+16 (high). */
export function quantizeRowQ4_0(src: Float32Array, dst: Uint8Array): void {
  const nb = checkRows('Q4_0', src, dst, 18);
  for (let i = 0; i < nb; i++) {
    const base = i * QK;
    const d = fr(signedAbsMax(src, base) / -8);
    const id = d ? fr(1 / d) : 0;
    const o = i * 18;
    writeF16(dst, o, d);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(fr(src[base + j]! * id) + 8.5);
      const x1 = fr(fr(src[base + 16 + j]! * id) + 8.5);
      const q0 = Math.min(15, Math.trunc(x0));
      const q1 = Math.min(15, Math.trunc(x1));
      dst[o + 2 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
    }
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

function minMax(src: Float32Array, base: number): [number, number] {
  let min = FLT_MAX;
  let max = -FLT_MAX;
  for (let j = 0; j < QK; j++) {
    const v = src[base + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

/** Q4_1: d = (max-min)/15, m = min, q = min(15, trunc((x-min)/d + 0.5)). */
export function quantizeRowQ4_1(src: Float32Array, dst: Uint8Array): void {
  const nb = checkRows('Q4_1', src, dst, 20);
  for (let i = 0; i < nb; i++) {
    const base = i * QK;
    const [min, max] = minMax(src, base);
    const d = fr(fr(max - min) / 15);
    const id = d ? fr(1 / d) : 0;
    const o = i * 20;
    writeF16(dst, o, d);
    writeF16(dst, o + 2, min);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(fr(fr(src[base + j]! - min) * id) + 0.5);
      const x1 = fr(fr(fr(src[base + 16 + j]! - min) * id) + 0.5);
      const q0 = Math.min(15, Math.trunc(x0));
      const q1 = Math.min(15, Math.trunc(x1));
      dst[o + 4 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
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

function putU32(dst: Uint8Array, at: number, v: number): void {
  dst[at] = v & 0xff;
  dst[at + 1] = (v >>> 8) & 0xff;
  dst[at + 2] = (v >>> 16) & 0xff;
  dst[at + 3] = (v >>> 24) & 0xff;
}

function getU32(src: Uint8Array, at: number): number {
  return (src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24)) >>> 0;
}

/** Q5_0: d = max/-16, q = min(31, trunc(x/d + 16.5)); low nibbles as Q4_0, bit 4 of value j in bit j of qh. */
export function quantizeRowQ5_0(src: Float32Array, dst: Uint8Array): void {
  const nb = checkRows('Q5_0', src, dst, 22);
  for (let i = 0; i < nb; i++) {
    const base = i * QK;
    const d = fr(signedAbsMax(src, base) / -16);
    const id = d ? fr(1 / d) : 0;
    const o = i * 22;
    writeF16(dst, o, d);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(31, Math.trunc(fr(fr(src[base + j]! * id) + 16.5)));
      const q1 = Math.min(31, Math.trunc(fr(fr(src[base + 16 + j]! * id) + 16.5)));
      dst[o + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      qh |= ((q0 & 0x10) >>> 4) << j;
      qh |= ((q1 & 0x10) >>> 4) << (j + 16);
    }
    putU32(dst, o + 2, qh >>> 0);
  }
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

/** Q5_1: d = (max-min)/31, m = min, q = trunc((x-min)/d + 0.5) (no clamp in ggml). */
export function quantizeRowQ5_1(src: Float32Array, dst: Uint8Array): void {
  const nb = checkRows('Q5_1', src, dst, 24);
  for (let i = 0; i < nb; i++) {
    const base = i * QK;
    const [min, max] = minMax(src, base);
    const d = fr(fr(max - min) / 31);
    const id = d ? fr(1 / d) : 0;
    const o = i * 24;
    writeF16(dst, o, d);
    writeF16(dst, o + 2, min);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      // (uint8_t) of a float: truncation, then the low 8 bits.
      const q0 = Math.trunc(fr(fr(fr(src[base + j]! - min) * id) + 0.5)) & 0xff;
      const q1 = Math.trunc(fr(fr(fr(src[base + 16 + j]! - min) * id) + 0.5)) & 0xff;
      dst[o + 8 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      qh |= ((q0 & 0x10) >>> 4) << j;
      qh |= ((q1 & 0x10) >>> 4) << (j + 16);
    }
    putU32(dst, o + 4, qh >>> 0);
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
