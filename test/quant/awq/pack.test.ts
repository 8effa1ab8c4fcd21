// The 4-bit kernel and both checkpoint layouts: codes and scales round-trip exactly through AutoAWQ GEMM and
// compressed-tensors packing (unpacked the way the loaders read them), the nibble orders are the published
// ones, and the quantizer behaves as AutoAWQ's pseudo_quantize_tensor on hand-checked groups.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fp32ToFp16, FP16_TO_FP32 } from '../../../src/formats/fp16.js';
import { dequantize, fakeQuantize, quantizeGroups, roundEven, type QuantizedLinear } from '../../../src/quant/awq/kernel.js';
import { AWQ_ORDER, packAwqGemm, packCompressed, unpackAwqGemm, unpackCompressed } from '../../../src/quant/awq/pack.js';
import { rng } from '../../support/gguf-fixtures.js';

function randomWeights(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r.normal() * 0.05);
}

function assertSame(a: QuantizedLinear, b: QuantizedLinear): void {
  assert.equal(a.out, b.out);
  assert.equal(a.in, b.in);
  assert.equal(a.groupSize, b.groupSize);
  assert.deepEqual(a.q, b.q);
  assert.deepEqual(a.zeros, b.zeros);
  assert.deepEqual(a.scales, b.scales);
}

test('round half to even, as torch.round', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundEven), [0, 2, 2, -0, -2, -2, 2, -3]);
});

test('one group by hand: scale in fp16, zero from the rounded scale, codes clamped', () => {
  const w = Float32Array.from([-0.3, -0.1, 0, 0.05, 0.2, 0.45, 0.1, -0.2]);
  const ql = quantizeGroups(w, 1, 8, 8);
  const scale = FP16_TO_FP32[fp32ToFp16(Math.fround(0.75 / 15))]!;
  assert.equal(FP16_TO_FP32[ql.scales[0]!], scale);
  const zero = -roundEven(-0.3 / scale);
  assert.equal(ql.zeros[0], zero);
  assert.deepEqual([...ql.q], [...w].map((v) => Math.min(15, Math.max(0, roundEven(v / scale) + zero))));
  assert.deepEqual(dequantize(ql), fakeQuantize(w, 1, 8, 8));
  // A constant group: the 1e-5 floor keeps the scale finite and the value exact enough.
  const c = quantizeGroups(new Float32Array(8).fill(0.25), 1, 8, 8);
  assert.ok(Number.isFinite(FP16_TO_FP32[c.scales[0]!]!) && FP16_TO_FP32[c.scales[0]!]! > 0);
});

for (const [out, inF, g] of [[64, 128, 128], [24, 64, 32], [128, 384, 128], [8, 256, 64]] as const) {
  test(`[${out}, ${inF}] group ${g}: AutoAWQ GEMM and compressed-tensors round trips are exact`, () => {
    const w = randomWeights(out * inF, out * 1000 + inF);
    const ql = quantizeGroups(w, out, inF, g);
    const awq = packAwqGemm(ql);
    assert.equal(awq.qweight.length, inF * out / 8);
    assert.equal(awq.qzeros.length, (inF / g) * out / 8);
    assert.equal(awq.scales.length, (inF / g) * out);
    assertSame(unpackAwqGemm(awq, out, inF, g), ql);
    const ct = packCompressed(ql);
    assert.equal(ct.weight_packed.length, out * inF / 8);
    assert.equal(ct.weight_zero_point.length, (out / 8) * (inF / g));
    assert.deepEqual([...ct.weight_shape], [BigInt(out), BigInt(inF)]);
    assertSame(unpackCompressed(ct, g), ql);
    assert.deepEqual(dequantize(unpackCompressed(ct, g)), fakeQuantize(w, out, inF, g));
  });
}

test('nibble orders: AutoAWQ interleaves [0,2,4,6,1,3,5,7] along out, compressed-tensors is sequential along in', () => {
  // One input row, 8 outputs with codes 0..7 (scale/zero irrelevant to the layout).
  const ql: QuantizedLinear = { out: 8, in: 8, groupSize: 8, q: new Uint8Array(64), zeros: Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]), scales: new Uint16Array(8).fill(0x3c00) };
  for (let o = 0; o < 8; o++) ql.q[o * 8] = o; // column (input) 0 of output o holds o
  const awq = packAwqGemm(ql);
  // Row 0 of qweight: nibble k = code of output AWQ_ORDER[k] = AWQ_ORDER[k].
  assert.equal(awq.qweight[0]! >>> 0, AWQ_ORDER.reduce((word, col, k) => word | (col << (4 * k)), 0) >>> 0);
  assert.equal(awq.qweight[0]! >>> 0, 0x75316420);
  assert.equal(awq.qzeros[0]! >>> 0, 0x75316420);
  const ct = packCompressed(ql);
  // Output 5's row: code 5 at input 0, zeros elsewhere -> nibble 0 of its first word.
  assert.equal(ct.weight_packed[5 * 1]!, 5);
  // Zero points packed along outputs: nibble k = zero of output k.
  assert.equal(ct.weight_zero_point[0]! >>> 0, 0x76543210);
});
