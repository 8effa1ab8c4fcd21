// A BERT-style encoder built with bake's ONNX writer and a WordPiece tokenizer written here, quantized as
// transformers.js's q8 export does, verified on real text, and loaded offline by transformers.js.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { test } from 'node:test';
import { env, pipeline } from '@huggingface/transformers';
import { opCounts, readOnnx, writeOnnx } from '../../../src/formats/onnx/index.js';
import { quantizeOnnxModel } from '../../../src/quant/onnx/index.js';
import { GateError } from '../../../src/util/errors.js';
import { enforceGates } from '../../../src/verify/gates.js';
import { cosine, verifyOnnxModel, writeVerifyReport } from '../../../src/verify/onnx/index.js';
import { DEFAULT_EVAL_TEXTS } from '../../../src/model/onnx/index.js';
import { writeBertFolder } from '../../support/onnx-bert.js';
import { tempDir } from '../../support/onnx-models.js';

const LABELS = ['negative', 'neutral', 'positive'];

async function offlinePipeline(task: 'feature-extraction' | 'text-classification', dir: string, dtype: 'q8' | 'fp32') {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = dirname(dir) + '/';
  return pipeline(task, basename(dir), { dtype });
}

test('feature extraction: q8 defaults, gates pass on real text, transformers.js loads the baked folder offline', async () => {
  const src = await writeBertFolder(join(await tempDir(), 'encoder'));
  const out = join(await tempDir(), 'encoder-q8');
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8' }, { task: 'feature-extraction' });
  assert.deepEqual(r.outputs, ['onnx/model_quantized.onnx']);
  const p = r.params['onnx/model.onnx'] as Record<string, unknown>;
  assert.deepEqual([p.weightType, p.perChannel, p.reduceRange, p.symmetric], ['int8', true, true, true], 'BERT encoder q8: int8 per-channel reduce_range');
  const counts = opCounts(await readOnnx(join(out, 'onnx/model_quantized.onnx')));
  assert.equal(counts.MatMulInteger, 12);
  assert.equal(counts.DynamicQuantizeLinear, 8, 'per layer: one shared by Q, K and V, then attention output, intermediate, output');
  assert.equal(counts.DequantizeLinear, 3, 'word, position and token-type embeddings quantized');
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt', 'special_tokens_map.json']) assert.ok(existsSync(join(out, f)), f);

  const report = await verifyOnnxModel('encoder', src, out, { min_cosine: 0.99, max_size_ratio: 0.4, runs: 5 }, { task: 'feature-extraction' });
  assert.equal(report.passed, true, JSON.stringify(report));
  assert.equal(report.details!.inputs, 'text');
  assert.ok(report.metrics.size_ratio! < 0.4 && report.metrics.latency_ratio! > 0 && report.metrics.peak_rss_bytes! > 10e6);
  assert.equal((Object.values(report.details!.files as object)[0] as { metrics: { samples: number } }).metrics.samples, DEFAULT_EVAL_TEXTS.length);
  const reportFile = join(out, '..', 'verify.json');
  await writeVerifyReport(reportFile, report);
  assert.equal(JSON.parse(await readFile(reportFile, 'utf8')).model, 'encoder');

  const quantized = await offlinePipeline('feature-extraction', out, 'q8');
  const float = await offlinePipeline('feature-extraction', src, 'fp32');
  for (const text of DEFAULT_EVAL_TEXTS.slice(0, 5)) {
    const [a, b] = [await float(text, { pooling: 'mean', normalize: true }), await quantized(text, { pooling: 'mean', normalize: true })];
    assert.ok(cosine(a.data as Float32Array, b.data as Float32Array) > 0.99);
  }
});

test('text classification: top-1 and rank agreement measured; the transformers.js pipeline agrees on labels', async () => {
  const src = await writeBertFolder(join(await tempDir(), 'classifier'), { labels: LABELS, seed: 3 });
  const out = join(await tempDir(), 'classifier-q8');
  await quantizeOnnxModel(src, out, { format: 'onnx-int8' }, { task: 'text-classification' });
  const report = await verifyOnnxModel('classifier', src, out, { min_top1: 0.9, min_spearman: 0.9, runs: 3 }, { task: 'text-classification', measureMemory: false });
  assert.equal(report.passed, true, JSON.stringify(report.metrics));
  assert.ok(report.metrics.top1_agreement! >= 0.9 && report.metrics.spearman! >= 0.9);
  const [q, f] = [await offlinePipeline('text-classification', out, 'q8'), await offlinePipeline('text-classification', src, 'fp32')];
  let same = 0;
  for (const text of DEFAULT_EVAL_TEXTS.slice(0, 10)) {
    const [a, b] = [(await f(text)) as { label: string }[], (await q(text)) as { label: string }[]];
    assert.ok(LABELS.includes(b[0]!.label));
    if (a[0]!.label === b[0]!.label) same++;
  }
  assert.ok(same >= 9, `labels agree on ${same}/10`);
});

test('a failed gate names the metric, its value and the threshold', async () => {
  const src = await writeBertFolder(join(await tempDir(), 'enc'), { seed: 11 });
  const out = join(await tempDir(), 'enc-q8');
  await quantizeOnnxModel(src, out, { format: 'onnx-int8' });
  const report = await verifyOnnxModel('enc', src, out, { min_cosine: 0.9999999, max_size_ratio: 0.01, runs: 1 }, { evalTexts: ['hello world', 'the river flooded the valley'], measureMemory: false });
  assert.equal(report.passed, false);
  assert.deepEqual(report.gates.map((g) => [g.gate, g.passed]), [['min_cosine', false], ['max_size_ratio', false]]);
  assert.throws(() => enforceGates('enc', report), (e: unknown) => e instanceof GateError && e.metric === 'cosine_min' && /cosine_min = 0\.9\d+ but the recipe requires cosine_min >= 0\.9999999/.test(e.message));
});

test('static QDQ with calibration texts, and a source stored with external data', async () => {
  const src = await writeBertFolder(join(await tempDir(), 'ext'), { seed: 5 });
  const file = join(src, 'onnx/model.onnx');
  await writeOnnx(await readOnnx(file), file, { externalData: true });
  assert.ok(existsSync(join(src, 'onnx/model.onnx_data')));
  const out = join(await tempDir(), 'ext-static');
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8', mode: 'static', dtype: 'int8', per_channel: true, calibration: { samples: 8 } }, { calibrationTexts: DEFAULT_EVAL_TEXTS.slice(0, 8) as string[] });
  assert.deepEqual(r.outputs, ['onnx/model_int8.onnx']);
  assert.equal((r.params['onnx/model.onnx'] as { rewritten: Record<string, number> }).rewritten.MatMul, 12);
  assert.ok(!existsSync(join(out, 'onnx/model.onnx_data')), 'external data of the source is not carried as a loose file');
  const report = await verifyOnnxModel('ext', src, out, { min_mean_cosine: 0.98, max_size_ratio: 0.65, runs: 2 }, { evalTexts: DEFAULT_EVAL_TEXTS.slice(8) as string[], measureMemory: false });
  assert.equal(report.passed, true, JSON.stringify(report.metrics));
  assert.ok((report.details!.source_bytes as number) > (await stat(file)).size, 'size counts the external data file');
});

test('int8, uint8 and fp16 variants land under their transformers.js names and load by dtype', async () => {
  const src = await writeBertFolder(join(await tempDir(), 'enc3'), { seed: 13 });
  const out = join(await tempDir(), 'enc3-all');
  await quantizeOnnxModel(src, out, { format: 'onnx-int8', dtype: 'int8' });
  await quantizeOnnxModel(src, out, { format: 'onnx-int8', dtype: 'uint8' });
  await quantizeOnnxModel(src, out, { format: 'onnx-fp16' });
  const float = await offlinePipeline('feature-extraction', src, 'fp32');
  const ref = await float('Bees communicate with a waggle dance.', { pooling: 'mean', normalize: true });
  for (const dtype of ['int8', 'uint8', 'fp16'] as const) {
    assert.ok(existsSync(join(out, `onnx/model_${dtype}.onnx`)));
    env.localModelPath = dirname(out) + '/';
    const p = await pipeline('feature-extraction', basename(out), { dtype });
    const e = await p('Bees communicate with a waggle dance.', { pooling: 'mean', normalize: true });
    assert.ok(cosine(ref.data as Float32Array, e.data as Float32Array) > 0.99, dtype);
  }
});

test('a reranker (one logit per input): rank agreement across inputs and best-input agreement', async () => {
  const src = await writeBertFolder(join(await tempDir(), 'reranker'), { labels: ['LABEL_0'], seed: 17 });
  const out = join(await tempDir(), 'reranker-q8');
  await quantizeOnnxModel(src, out, { format: 'onnx-int8' }, { task: 'text-classification' });
  const report = await verifyOnnxModel('reranker', src, out, { min_spearman: 0.95, min_top1: 1, runs: 2 }, { task: 'text-classification', measureMemory: false });
  assert.equal(report.passed, true, JSON.stringify(report.metrics));
  // One ranking over all eval texts: a single spearman and a single top-1 (the best-scored text).
  assert.ok(report.metrics.spearman! >= 0.95 && report.metrics.spearman! <= 1);
  assert.equal(report.metrics.top1_agreement, 1);
});

test('quantized weights written as external data are declared in config.json so transformers.js loads them', async () => {
  const src = await writeBertFolder(join(await tempDir(), 'encx'), { seed: 19 });
  const out = join(await tempDir(), 'encx-q8');
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8' }, { externalData: true });
  assert.deepEqual(r.outputs, ['onnx/model_quantized.onnx', 'onnx/model_quantized.onnx_data']);
  const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
  assert.deepEqual(config['transformers.js_config'], { use_external_data_format: { 'model_quantized.onnx': 1 } });
  assert.equal(config.model_type, 'bert', 'the rest of config.json is kept');
  const q = await offlinePipeline('feature-extraction', out, 'q8');
  const f = await offlinePipeline('feature-extraction', src, 'fp32');
  const text = 'Light travels at about 300,000 kilometres per second.';
  const [a, b] = [await f(text, { pooling: 'mean', normalize: true }), await q(text, { pooling: 'mean', normalize: true })];
  assert.ok(cosine(a.data as Float32Array, b.data as Float32Array) > 0.99);
  const report = await verifyOnnxModel('encx', src, out, { min_cosine: 0.99, runs: 1 }, { measureMemory: false });
  assert.ok(report.passed && (report.details!.quantized_bytes as number) > 100_000, 'sizes count the data file');
});
