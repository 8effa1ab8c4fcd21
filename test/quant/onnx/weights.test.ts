// The weight arithmetic against onnxruntime's own QuantizeLinear / DynamicQuantizeLinear kernels.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { DataType, makeNode, makeTensor, writeOnnx, type ModelProto } from '../../../src/formats/onnx/index.js';
import { activationParams, qRange, quantizeWeight, roundHalfEven } from '../../../src/quant/onnx/weights.js';
import { prng } from '../../../src/model/onnx/index.js';
import { tempDir } from '../../support/onnx-models.js';

const tensorType = (elem: number, dims: number[]) => ({ tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => ({ dim_value: d })) } } });

function randomValues(n: number, seed: number, spread = 3): Float32Array {
  const r = prng(seed);
  return Float32Array.from({ length: n }, () => (r() - 0.3) * spread);
}

test('ranges follow onnxruntime: int8 [-128,127], symmetric [-127,127], reduce_range [-64,64], uint8 [0,255] / [0,127]', () => {
  assert.deepEqual(qRange('int8', false, false), [-128, 127]);
  assert.deepEqual(qRange('int8', true, false), [-127, 127]);
  assert.deepEqual(qRange('int8', true, true), [-64, 64]);
  assert.deepEqual(qRange('uint8', false, false), [0, 255]);
  assert.deepEqual(qRange('uint8', false, true), [0, 127]);
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6].map(roundHalfEven), [0, 2, 2, -0, -2, 2, -3]);
});

test('symmetric int8 has zero point 0 and symmetric uint8 128; values stay in range; dequantized error <= scale/2', () => {
  const data = randomValues(4000, 3);
  for (const [type, symmetric, reduceRange, zp] of [['int8', true, false, 0], ['uint8', true, false, 128], ['int8', true, true, 0]] as const) {
    const q = quantizeWeight(data, [4000], type, { symmetric, reduceRange });
    assert.equal(q.zeroPoints[0], zp);
    const [lo, hi] = qRange(type, symmetric, reduceRange);
    for (let i = 0; i < data.length; i++) {
      assert.ok(q.values[i]! >= lo && q.values[i]! <= hi);
      assert.ok(Math.abs((q.values[i]! - zp) * q.scales[0]! - data[i]!) <= q.scales[0]! / 2 + 1e-6);
    }
  }
});

test('per-channel weights get one scale per channel along the axis (MatMul B columns, Conv output channels)', () => {
  const dims = [6, 4];
  const data = new Float32Array(24);
  for (let k = 0; k < 6; k++) for (let n = 0; n < 4; n++) data[k * 4 + n] = (k - 2.5) * (n + 1);
  const q = quantizeWeight(data, dims, 'int8', { symmetric: true, reduceRange: false, axis: 1 });
  assert.equal(q.scales.length, 4);
  for (let n = 0; n < 4; n++) assert.ok(Math.abs(q.scales[n]! - (2.5 * (n + 1)) / 127) < 1e-6);
  const conv = quantizeWeight(randomValues(2 * 3 * 3 * 3, 5), [2, 3, 3, 3], 'uint8', { symmetric: false, reduceRange: false, axis: 0 });
  assert.equal(conv.scales.length, 2);
});

test('quantized values equal onnxruntime QuantizeLinear for the same scale and zero point', async () => {
  const data = randomValues(1000, 11, 7);
  const dir = await tempDir();
  for (const type of ['int8', 'uint8'] as const) {
    const q = quantizeWeight(data, [1000], type, { symmetric: false, reduceRange: false });
    const elem = type === 'int8' ? DataType.INT8 : DataType.UINT8;
    const model: ModelProto = {
      ir_version: 8, opset_import: [{ domain: '', version: 13 }],
      graph: {
        name: 'q', node: [makeNode('QuantizeLinear', ['x', 's', 'z'], ['y'], 'q')],
        initializer: [makeTensor('s', [], q.scales), makeTensor('z', [], q.zeroPoints, elem)],
        input: [{ name: 'x', type: tensorType(DataType.FLOAT, [1000]) }], output: [{ name: 'y', type: tensorType(elem, [1000]) }], value_info: [],
      },
    };
    const file = join(dir, `${type}.onnx`);
    await writeOnnx(model, file);
    const s = await ort.InferenceSession.create(file);
    const y = (await s.run({ x: new ort.Tensor('float32', data, [1000]) })).y!.data as Int8Array | Uint8Array;
    assert.deepEqual(Array.from(q.values), Array.from(y), `${type} values differ from onnxruntime`);
  }
});

test('activation parameters equal onnxruntime DynamicQuantizeLinear', async () => {
  const dir = await tempDir();
  const model: ModelProto = {
    ir_version: 8, opset_import: [{ domain: '', version: 13 }],
    graph: {
      name: 'dql', node: [makeNode('DynamicQuantizeLinear', ['x'], ['y', 's', 'z'], 'dql')], initializer: [], value_info: [],
      input: [{ name: 'x', type: tensorType(DataType.FLOAT, [500]) }],
      output: [{ name: 'y', type: tensorType(DataType.UINT8, [500]) }, { name: 's', type: tensorType(DataType.FLOAT, []) }, { name: 'z', type: tensorType(DataType.UINT8, []) }],
    },
  };
  const file = join(dir, 'dql.onnx');
  await writeOnnx(model, file);
  const s = await ort.InferenceSession.create(file);
  for (const seed of [1, 2, 3]) {
    const x = randomValues(500, seed, 5 * seed);
    const out = await s.run({ x: new ort.Tensor('float32', x, [500]) });
    let lo = Infinity, hi = -Infinity;
    for (const v of x) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const p = activationParams(lo, hi);
    assert.ok(Math.abs(p.scale - (out.s!.data as Float32Array)[0]!) < 1e-7);
    assert.equal(p.zeroPoint, (out.z!.data as Uint8Array)[0]);
  }
});
