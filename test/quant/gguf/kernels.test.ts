// The block kernels and float conversions, checked against ggml's own formulas re-stated here (the
// fp16 bit trick of ggml-impl.h), and round-trip error bounds for every type in the table.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fp16ToFp32, fp32ToFp16 } from '../../../src/formats/fp16.js';
import { GGML_TYPES, ggmlTypeByName, tensorBytes } from '../../../src/quant/gguf/types.js';
import { rng, weights } from '../../support/gguf-fixtures.js';

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
const fromBits = (b: number): number => { u[0] = b >>> 0; return f[0]!; };
const toBits = (x: number): number => { f[0] = x; return u[0]!; };

/** ggml_compute_fp32_to_fp16 exactly as ggml writes it: float32 scaling tricks, no branches on rounding. */
function ggmlFp16(x: number): number {
  const fr = Math.fround;
  let base = fr(fr(Math.abs(fr(x)) * 2 ** 112) * 2 ** -110);
  const w = toBits(x);
  const shl1 = (w * 2) >>> 0;
  const sign = (w & 0x80000000) >>> 0;
  let bias = (shl1 & 0xff000000) >>> 0;
  if (bias < 0x71000000) bias = 0x71000000;
  base = fr(fromBits(((bias >>> 1) + 0x07800000) >>> 0) + base);
  const bits = toBits(base);
  const nonsign = ((bits >>> 13) & 0x7c00) + (bits & 0xfff);
  return (sign >>> 16) | (shl1 > 0xff000000 ? 0x7e00 : nonsign);
}

describe('float conversions', () => {
  test('fp32 -> fp16 equals ggml on 2M bit patterns (every exponent, the rounding boundaries, NaN, inf)', () => {
    const r = rng(5);
    const check = (bits: number): void => {
      const x = fromBits(bits);
      const ours = fp32ToFp16(x);
      const theirs = ggmlFp16(x);
      if (ours !== theirs) assert.fail(`bits 0x${(bits >>> 0).toString(16)} (${x}): ours 0x${ours.toString(16)} ggml 0x${theirs.toString(16)}`);
    };
    for (let i = 0; i < 2_000_000; i++) check(Math.floor(r.uniform() * 2 ** 32));
    for (let e = 0; e < 256; e++) for (const m of [0, 1, 0xfff, 0x1000, 0x1001, 0x2000, 0x3000, 0x7fffff, 0x400000]) {
      check((e << 23) | m);
      check(((e << 23) | m | 0x80000000) >>> 0);
    }
    // The F16 tensor kernel (WebAssembly, 8 lanes at a time, with a scalar tail: 4099 values).
    const row = Float32Array.from({ length: 4099 }, () => fromBits(Math.floor(r.uniform() * 2 ** 32)));
    const out = new Uint8Array(row.length * 2);
    ggmlTypeByName('F16')!.quantize(row, out);
    const halves = new Uint16Array(out.buffer);
    row.forEach((x, i) => assert.equal(halves[i], ggmlFp16(x), `value ${i}: bits 0x${toBits(x).toString(16)}`));
  });

  test('fp16 -> fp32 is exact for every half value', () => {
    for (let h = 0; h < 65536; h++) {
      const x = fp16ToFp32(h);
      if (Number.isNaN(x)) assert.ok(((h >>> 10) & 0x1f) === 0x1f && (h & 0x3ff) !== 0);
      else assert.equal(fp32ToFp16(x), h, `half 0x${h.toString(16)}`);
    }
  });

  test('fp32 -> bf16 rounds to nearest even and keeps NaN quiet', () => {
    // Through the BF16 tensor kernel: 4 lanes at a time, then a scalar tail; w goes through both.
    const fp32BitsToBf16 = (w: number): number => {
      const out = new Uint16Array(5);
      ggmlTypeByName('BF16')!.quantize(new Float32Array(new Uint32Array([w, 0, 0, 0, w]).buffer), new Uint8Array(out.buffer));
      assert.equal(out[0], out[4], 'lane and tail agree');
      return out[0]!;
    };
    assert.equal(fp32BitsToBf16(0x3f808000), 0x3f80); // tie, even stays
    assert.equal(fp32BitsToBf16(0x3f818000), 0x3f82); // tie, odd rounds up
    assert.equal(fp32BitsToBf16(0x3f808001), 0x3f81);
    assert.equal(fp32BitsToBf16(0x7f800001), 0x7fc0);
    assert.equal(fp32BitsToBf16(0xff800000), 0xff80);
  });
});

describe('type table', () => {
  const values = weights(256 * 64, 11);
  for (const type of GGML_TYPES) {
    test(`${type.name}: size from the table, dequantize(quantize(x)) close to x`, () => {
      const bytes = tensorBytes(type, [256, 64])!;
      assert.equal(bytes, (256 * 64 / type.blockSize) * type.bytesPerBlock);
      const q = new Uint8Array(bytes);
      type.quantize(values, q);
      const back = new Float32Array(values.length);
      type.dequantize(q, back);
      // Relative RMS error bounds by bits per weight (loose: they catch layout bugs, not rounding).
      const bound: Record<string, number> = { F32: 0, F16: 1e-3, BF16: 8e-3, Q8_0: 0.01, Q6_K: 0.03, Q5_0: 0.06, Q5_1: 0.06, Q5_K: 0.06, Q4_0: 0.15, Q4_1: 0.12, Q4_K: 0.12 };
      let err = 0;
      let ref = 0;
      for (let i = 0; i < values.length; i++) {
        err += (back[i]! - values[i]!) ** 2;
        ref += values[i]! ** 2;
      }
      const rel = Math.sqrt(err / ref);
      assert.ok(rel <= bound[type.name]!, `${type.name}: relative RMS error ${rel}`);
    });
  }

  test('Q8_0 rounds half away from zero and Q4_0 keeps the first max on ties', () => {
    const q8 = GGML_TYPES.find((t) => t.name === 'Q8_0')!;
    const x = new Float32Array(32);
    x[0] = 127; x[1] = 2.5; x[2] = -2.5; x[3] = 0.5; x[4] = -0.5;
    const out = new Uint8Array(34);
    q8.quantize(x, out);
    assert.deepEqual([...new Int8Array(out.buffer, 2, 5)], [127, 3, -3, 1, -1]);
    const q4 = GGML_TYPES.find((t) => t.name === 'Q4_0')!;
    const y = new Float32Array(32);
    y[0] = -1; y[1] = 1; // same magnitude: the first (negative) one sets d = -1 / -8
    const o4 = new Uint8Array(18);
    q4.quantize(y, o4);
    assert.equal(fp16ToFp32(o4[0]! | (o4[1]! << 8)), 0.125);
  });
});
