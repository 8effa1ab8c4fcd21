// When nothing was quantized (issue 9, item 8): an opset-9 model, Gemm in dynamic mode, every op kept float.
// The run still writes *_quantized.onnx (the folder stays loadable) but now says so as a warning naming the
// reason, records it with the result, and a size gate that fails points at the real fix, not "a wider type".
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { quantizeOnnxModel, whyNothingQuantized, type QuantizeEvent } from '../../../src/quant/onnx/index.js';
import { GateError } from '../../../src/util/errors.js';
import { enforceGates } from '../../../src/verify/gates.js';
import { verifyOnnxModel } from '../../../src/verify/onnx/index.js';
import { REAL_MODELS, SILERO_INPUTS, tempDir } from '../../support/onnx-models.js';
import { recogniserFolder } from '../../support/text-lines.js';

type Recorded = { nothing_quantized?: { reason: string; hint: string }; rewritten: Record<string, number> };

test('opset-9 recogniser in dynamic mode: warning event naming the opset, and a failed size gate says to upgrade it', async () => {
  const src = await recogniserFolder(9);
  const out = await tempDir();
  const events: QuantizeEvent[] = [];
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8' }, { onEvent: (e) => events.push(e) });
  assert.deepEqual(r.outputs, ['onnx/model_quantized.onnx'], 'the folder is still written');
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0]!, /^model\.onnx: nothing was quantized \(51 Conv\/MatMul nodes: model opset 9 < 11 has no DynamicQuantizeLinear\)/);
  assert.match(r.warnings[0]!, /opset 11 or later/);
  assert.deepEqual(events.filter((e) => e.type === 'warning').map((e) => e.message), r.warnings);
  const recorded = r.params['model.onnx'] as Recorded;
  assert.match(recorded.nothing_quantized!.hint, /re-export the model with ONNX opset 11/);

  const report = await verifyOnnxModel('rec', src, out, { max_size_ratio: 0.5, runs: 1 }, { inputs: { dims: {}, defaultDim: 64 }, samples: 1, measureMemory: false, quantization: { params: r.params } });
  assert.equal(report.passed, false);
  assert.deepEqual(report.details!.nothing_quantized, [{ file: 'onnx/model_quantized.onnx', ...recorded.nothing_quantized }]);
  assert.throws(() => enforceGates('rec', report), (e: unknown) => e instanceof GateError && e.metric === 'size_ratio' && /nothing was quantized in onnx\/model_quantized\.onnx/.test(e.hint!) && /opset 11/.test(e.hint!) && !/wider type/.test(e.hint!));
});

test('opset-9 recogniser in static mode: QuantizeLinear needs opset 10; the hint says so too', async () => {
  const src = await recogniserFolder(9);
  const r = await quantizeOnnxModel(src, await tempDir(), { format: 'onnx-int8', mode: 'static', preprocess: false });
  assert.match(r.warnings[0]!, /nothing was quantized \(51 Conv\/MatMul nodes: QuantizeLinear needs opset 10 or later\)/);
  assert.match((r.params['model.onnx'] as Recorded).nothing_quantized!.hint, /static mode opset 10/);
});

test('a wake-word head (Gemm only) in dynamic mode: the fix named is static mode', async () => {
  const src = await tempDir();
  await copyFile(REAL_MODELS.wakeword, join(src, 'model.onnx'));
  const out = await tempDir();
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8' });
  assert.match(r.warnings[0]!, /nothing was quantized \(3 Gemm nodes: Gemm is not quantized in dynamic mode/);
  const why = (r.params['model.onnx'] as Recorded).nothing_quantized!;
  assert.match(why.hint, /quantize\.mode: static/);
  const report = await verifyOnnxModel('ww', src, out, { max_size_ratio: 0.5, runs: 1 }, { samples: 1, measureMemory: false, quantization: { params: r.params } });
  assert.throws(() => enforceGates('ww', report), (e: unknown) => e instanceof GateError && /mode: static/.test(e.hint!));
  // Static mode quantizes the Gemms: no such warning (only the one about generated calibration inputs).
  const s = await quantizeOnnxModel(src, await tempDir(), { format: 'onnx-int8', mode: 'static' });
  assert.equal((s.params['model.onnx'] as Recorded).rewritten.Gemm, 3);
  assert.ok(!s.warnings.some((w) => /nothing was quantized/.test(w)));
});

test('op_types that match no weighted node, and a model where something was quantized, are told apart', async () => {
  const src = await tempDir();
  await copyFile(REAL_MODELS.sileroOp15, join(src, 'model.onnx'));
  const none = await quantizeOnnxModel(src, await tempDir(), { format: 'onnx-int8', op_types: ['MatMul'] });
  assert.match(none.warnings[0]!, /nothing was quantized \(no MatMul node holds a constant float weight\)/);
  const some = await tempDir();
  const r = await quantizeOnnxModel(src, some, { format: 'onnx-int8' });
  assert.deepEqual(r.warnings, []);
  assert.equal((r.params['model.onnx'] as Recorded).nothing_quantized, undefined);
  const report = await verifyOnnxModel('vad', src, some, { max_size_ratio: 0.1, runs: 1 }, { inputs: SILERO_INPUTS, samples: 1, measureMemory: false, quantization: { params: r.params } });
  assert.throws(() => enforceGates('vad', report), (e: unknown) => e instanceof GateError && /wider type/.test(e.hint!), 'a real size miss keeps the generic advice');
  // fp16 converts rather than quantizes: never reported as "nothing quantized".
  assert.deepEqual((await quantizeOnnxModel(src, await tempDir(), { format: 'onnx-fp16' })).warnings, []);
});

test('whyNothingQuantized: reasons ranked by node count, one fix per kind of reason', () => {
  const why = whyNothingQuantized([
    { node: 'a', op: 'Gemm', reason: 'Gemm is not quantized in dynamic mode (onnxruntime IntegerOps semantics)' },
    { node: 'b', op: 'Conv', reason: 'excluded by nodes_exclude' },
    { node: 'c', op: 'Conv', reason: 'excluded by nodes_exclude' },
  ], ['Conv', 'MatMul']);
  assert.equal(why.reason, '2 Conv nodes: excluded by nodes_exclude; 1 Gemm node: Gemm is not quantized in dynamic mode (onnxruntime IntegerOps semantics)');
  assert.match(why.hint, /^widen quantize\.nodes_include.*; set quantize\.mode: static/);
});
