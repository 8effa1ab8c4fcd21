// quantizeOnnxModel on real models nobody here wrote: rewrites, names, kept-float lists, and that every
// output loads and runs in onnxruntime-node.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { opCounts, readOnnx, toNumber } from '../../../src/formats/onnx/index.js';
import { outputPathFor, quantizeOnnxModel } from '../../../src/quant/onnx/index.js';
import { InputError } from '../../../src/util/errors.js';
import { verifyOnnxModel } from '../../../src/verify/onnx/index.js';
import { REAL_MODELS, SILERO_INPUTS, tempDir } from '../../support/onnx-models.js';

async function folderWith(file: string, name = 'model.onnx', extra: Record<string, string> = {}): Promise<string> {
  const dir = await tempDir('bake-onnx-src-');
  await copyFile(file, join(dir, name));
  for (const [k, v] of Object.entries(extra)) { await mkdir(join(dir, k, '..'), { recursive: true }); await writeFile(join(dir, k), v); }
  return dir;
}

test('output names are the ones transformers.js looks for', () => {
  assert.equal(outputPathFor('onnx/model.onnx', 'q8'), 'onnx/model_quantized.onnx');
  assert.equal(outputPathFor('model.onnx', 'int8'), 'onnx/model_int8.onnx');
  assert.equal(outputPathFor('onnx/decoder_model_merged.onnx', 'uint8'), 'onnx/decoder_model_merged_uint8.onnx');
  assert.equal(outputPathFor('silero_vad.onnx', 'fp16'), 'silero_vad_fp16.onnx');
});

test('silero-vad (If subgraphs, Constant weights): Conv and LSTM inside subgraphs rewritten, runs', async () => {
  const src = await folderWith(REAL_MODELS.sileroVad, 'silero_vad.onnx', { 'LICENSE': 'MIT', 'meta/info.json': '{}' });
  const out = await tempDir();
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8' });
  assert.deepEqual(r.outputs, ['silero_vad_quantized.onnx']);
  assert.ok(existsSync(join(out, 'LICENSE')) && existsSync(join(out, 'meta/info.json')), 'non-ONNX files carried along');
  assert.ok(!existsSync(join(out, 'silero_vad.onnx')), 'the float original is not copied');
  const params = r.params['silero_vad.onnx'] as Record<string, unknown>;
  assert.equal(params.weightType, 'uint8', 'q8 picks uint8 weights for a model with Conv');
  const counts = opCounts(await readOnnx(join(out, 'silero_vad_quantized.onnx')));
  assert.equal(counts.ConvInteger, 12);
  assert.equal(counts.Conv ?? 0, 0);
  assert.equal(counts.LSTM ?? 0, 0);
  assert.equal(counts.DynamicQuantizeLSTM, 4, 'LSTM weights (computed by Concat/Unsqueeze, folded first) quantized');
  assert.deepEqual(r.keptFloat, []);
  const report = await verifyOnnxModel('silero', src, out, { min_mean_cosine: 0.95, max_size_ratio: 0.45, runs: 3 }, { inputs: SILERO_INPUTS, samples: 4, measureMemory: false });
  assert.equal(report.passed, true, JSON.stringify(report.metrics));
  // The speech probability is one value per window: compared by error and decision, not cosine.
  const outputs = (report.details!.files as Record<string, { outputs: Record<string, { cosine_min?: number; max_abs_error: number; decision_agreement: number }> }>)['silero_vad_quantized.onnx']!.outputs;
  assert.equal(outputs.output!.cosine_min, undefined);
  assert.ok(outputs.output!.max_abs_error < 0.01 && outputs.output!.decision_agreement === 1, `speech probability agrees: ${JSON.stringify(outputs.output)}`);
});

test('without constant folding, LSTM weights computed at run time stay float and are listed', async () => {
  const src = await folderWith(REAL_MODELS.sileroOp15);
  const out = await tempDir();
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8', preprocess: false });
  assert.deepEqual(r.keptFloat.map((k) => [k.op, k.reason]), [['LSTM', 'weight input is not a constant (initializer or Constant node)'], ['LSTM', 'weight input is not a constant (initializer or Constant node)']]);
  assert.equal(opCounts(await readOnnx(join(out, 'onnx/model_quantized.onnx'))).ConvInteger, 6);
});

test('silero-vad op18: initializers of the main graph read inside If branches are quantized where they live', async () => {
  const src = await folderWith(REAL_MODELS.sileroOp18);
  const out = await tempDir();
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8', dtype: 'uint8' });
  assert.deepEqual(r.outputs, ['onnx/model_uint8.onnx']);
  const q = await readOnnx(join(out, 'onnx/model_uint8.onnx'));
  assert.equal(opCounts(q).ConvInteger, 12);
  assert.ok(q.graph.initializer.some((t) => t.name?.endsWith('_quantized')), 'quantized weights sit beside the originals in the main graph');
  assert.equal(r.keptFloat.filter((k) => k.op === 'Gemm').length, 4, 'Gemm stays float in dynamic mode and is listed');
  const report = await verifyOnnxModel('silero18', src, out, { max_size_ratio: 0.75, runs: 3 }, { inputs: SILERO_INPUTS, samples: 2, measureMemory: false });
  assert.equal(report.passed, true);
});

test('ppocr-det (Constant-fed Conv weights): q8 dynamic and static QDQ per channel both load and run', async () => {
  const src = await folderWith(REAL_MODELS.ppocrDet);
  const inputs = { dims: {}, defaultDim: 96 };
  const dyn = await tempDir();
  const r = await quantizeOnnxModel(src, dyn, { format: 'onnx-int8' });
  assert.equal(opCounts(await readOnnx(join(dyn, 'onnx/model_quantized.onnx'))).ConvInteger, 62);
  assert.deepEqual(r.keptFloat.map((k) => k.op), ['ConvTranspose', 'ConvTranspose']);
  const st = await tempDir();
  const s = await quantizeOnnxModel(src, st, { format: 'onnx-int8', mode: 'static', per_channel: true, dtype: 'int8', calibration: { samples: 4 } }, { inputs });
  const model = await readOnnx(join(st, 'onnx/model_int8.onnx'));
  const counts = opCounts(model);
  assert.equal((s.params['model.onnx'] as { rewritten: Record<string, number> }).rewritten.Conv, 62);
  assert.ok(counts.QuantizeLinear! >= 62 && counts.DequantizeLinear! > counts.QuantizeLinear!);
  assert.equal(toNumber(model.opset_import.find((o) => !o.domain)!.version), 13, 'opset 11 raised to 13 for per-axis DequantizeLinear');
  const report = await verifyOnnxModel('ppocr', src, st, { max_size_ratio: 0.35, runs: 2 }, { inputs, samples: 2, measureMemory: false });
  assert.equal(report.passed, true);
  assert.ok(report.metrics.cosine_mean! > 0.3 && report.metrics.cosine_mean! <= 1);
});

test('int8 weights on Conv: kept float with the reason (onnxruntime ConvInteger takes uint8 only)', async () => {
  const src = await folderWith(REAL_MODELS.sileroOp15);
  const out = await tempDir();
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8', weight_type: 'int8' });
  const conv = r.keptFloat.filter((k) => k.op === 'Conv');
  assert.equal(conv.length, 6);
  assert.match(conv[0]!.reason, /uint8/);
  await verifyOnnxModel('s', src, out, { runs: 1 }, { inputs: SILERO_INPUTS, samples: 1, measureMemory: false });
});

test('fp16 keeps float inputs and outputs, halves the weights and agrees closely', async () => {
  const src = await folderWith(REAL_MODELS.ppocrDet);
  const out = await tempDir();
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-fp16' });
  assert.deepEqual(r.outputs, ['onnx/model_fp16.onnx']);
  const m = await readOnnx(join(out, 'onnx/model_fp16.onnx'));
  assert.equal(m.graph.input[0]!.type!.tensor_type!.elem_type, 1);
  const report = await verifyOnnxModel('ppocr16', src, out, { min_cosine: 0.999, max_size_ratio: 0.55, runs: 2 }, { inputs: { defaultDim: 96 }, samples: 2, measureMemory: false });
  assert.equal(report.passed, true, JSON.stringify(report.metrics));
});

test('op_types and node lists: only listed ops and nodes are rewritten, excluded nodes are named', async () => {
  const src = await folderWith(REAL_MODELS.sileroOp15);
  const q = await readOnnx(join(src, 'model.onnx'));
  const convNames = q.graph.node.filter((n) => n.op_type === 'Conv').map((n) => n.name!);
  const out = await tempDir();
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8', nodes_exclude: [convNames[0]!] });
  assert.deepEqual(r.keptFloat.filter((k) => k.op === 'Conv'), [{ node: convNames[0], op: 'Conv', reason: 'excluded by nodes_exclude' }]);
  assert.equal(opCounts(await readOnnx(join(out, 'onnx/model_quantized.onnx'))).ConvInteger, convNames.length - 1);
  const none = await tempDir();
  const r2 = await quantizeOnnxModel(src, none, { format: 'onnx-int8', op_types: ['MatMul'] });
  assert.equal((r2.params['model.onnx'] as { rewritten: Record<string, number> }).rewritten.Conv, undefined);
});

test('bad specs and folders give InputError naming the field', async () => {
  const src = await folderWith(REAL_MODELS.wakeword, 'a.onnx');
  await copyFile(REAL_MODELS.wakeword, join(src, 'b.onnx'));
  const out = await tempDir();
  await assert.rejects(quantizeOnnxModel(src, out, { format: 'onnx-int8' }), (e: unknown) => e instanceof InputError && e.field === 'quantize.files');
  await assert.rejects(quantizeOnnxModel(src, out, { format: 'onnx-int8', files: ['*.bin'] }), (e: unknown) => e instanceof InputError && /matched no \.onnx/.test(e.message));
  await assert.rejects(quantizeOnnxModel(src, out, { format: 'onnx-int8', files: ['a.onnx'], dtype: 'fp16' }), (e: unknown) => e instanceof InputError && e.field === 'quantize.dtype');
  await assert.rejects(quantizeOnnxModel(src, out, { format: 'onnx-int8', files: ['a.onnx'], dtype: 'int8', weight_type: 'uint8' }), (e: unknown) => e instanceof InputError && e.field === 'quantize.weight_type');
  // Several files at once, each under its own name.
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8', files: ['*.onnx'] });
  assert.deepEqual(r.outputs, ['a_quantized.onnx', 'b_quantized.onnx']);
  assert.deepEqual((await readdir(out)).sort(), ['a_quantized.onnx', 'b_quantized.onnx']);
});

test('a model onnxruntime cannot load gets a clear error at verification', async () => {
  const src = await folderWith(REAL_MODELS.wakeword);
  const out = await tempDir();
  await quantizeOnnxModel(src, out, { format: 'onnx-int8' });
  // Break the quantized copy: a node of an op that does not exist.
  const { writeOnnx } = await import('../../../src/formats/onnx/index.js');
  const m = await readOnnx(join(out, 'onnx/model_quantized.onnx'));
  m.graph.node[0]!.op_type = 'NoSuchOp';
  await writeOnnx(m, join(out, 'onnx/model_quantized.onnx'));
  await assert.rejects(verifyOnnxModel('w', src, out, {}, { measureMemory: false }), (e: unknown) => e instanceof InputError && /onnxruntime cannot load/.test(e.message) && /NoSuchOp/.test(e.message));
});
