// Embedders and rerankers verified as they are served: pooled embeddings with the recipe's prefixes,
// pooling and normalization; rankings of each query's passages. On the RAG stand-ins (test/support/rag-models.ts).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { quantizeOnnxModel } from '../../../src/quant/onnx/index.js';
import type { EmbeddingSpec, RerankSpec } from '../../../src/recipe/types.js';
import { InputError } from '../../../src/util/errors.js';
import { cosine, parseEvalSamples, verifyOnnxModel } from '../../../src/verify/onnx/index.js';
import { TextModel } from '../../../src/model/onnx/index.js';
import { RAG_EVAL_FILE, writeBgeRerankerRepo, writeE5Repo } from '../../support/rag-models.js';
import { tempDir } from '../../support/onnx-models.js';

const E5: EmbeddingSpec = { pooling: 'mean', normalize: true, prefixes: { query: 'query: ', passage: 'passage: ' }, max_tokens: 512 };
const RERANK: RerankSpec = { activation: 'sigmoid', max_tokens: 512 };
const evalLines = async () => (await readFile(RAG_EVAL_FILE, 'utf8')).split('\n').filter((l) => l.trim());

test('an embedder is compared by pooled, normalized embeddings of its prefixed eval texts, and by passage rankings', async () => {
  const src = await writeE5Repo(join(await tempDir(), 'e5'));
  const out = join(await tempDir(), 'e5-q8');
  await quantizeOnnxModel(src, out, { format: 'onnx-int8' }, { task: 'feature-extraction' });
  const lines = await evalLines();
  const report = await verifyOnnxModel('embed', src, out, { min_cosine: 0.97, min_top1: 0.9, runs: 2 }, { embedding: E5, evalTexts: lines, measureMemory: false });
  assert.equal(report.passed, true, JSON.stringify(report.gates));
  assert.equal(report.details!.compared, 'pooled embeddings');
  // 12 queries with 4 passages each, all embedded with their prefix.
  assert.equal(report.details!.texts, 12 * 5);
  assert.equal(report.details!.queries, 12);
  assert.ok(report.metrics.cosine_min! > 0.97 && report.metrics.cosine_min! <= report.metrics.cosine_mean!);
  assert.ok(report.metrics.spearman! > 0.5 && report.metrics.top1_agreement! >= 0.9);

  // The metric is over pooled vectors: recompute one by hand (mean over the mask, L2) and compare.
  const [ref, q] = [await TextModel.open(out, join(src, 'onnx/model.onnx')), await TextModel.open(out, join(out, 'onnx/model_quantized.onnx'))];
  const text = 'query: ' + (JSON.parse(lines[0]!) as { query: string }).query;
  const [a, b] = [(await ref.embed([text], E5)).values[0]!, (await q.embed([text], E5)).values[0]!];
  assert.ok(Math.abs(Math.hypot(...a) - 1) < 1e-5, 'L2-normalized');
  assert.ok(cosine(a, b) >= report.metrics.cosine_min! - 1e-9);
  // Mean pooling is not the first token's state: the two poolings give different vectors.
  const cls = (await ref.embed([text], { ...E5, pooling: 'cls' })).values[0]!;
  assert.ok(cosine(a, cls) < 0.999);
  // Prefixes matter: the same text without its prefix embeds differently.
  const bare = (await ref.embed([text.slice('query: '.length)], E5)).values[0]!;
  assert.ok(cosine(a, bare) < 0.9999);
  await Promise.all([ref.release(), q.release()]);
});

test('a reranker is compared by the ranking of each query\'s passages; cosine gates and missing pairs are refused', async () => {
  const src = await writeBgeRerankerRepo(join(await tempDir(), 'bge'));
  const out = join(await tempDir(), 'bge-q8');
  await quantizeOnnxModel(src, out, { format: 'onnx-int8' }, { task: 'text-classification' });
  const lines = await evalLines();
  const report = await verifyOnnxModel('rerank', src, out, { min_spearman: 0.9, min_top1: 0.9, runs: 2 }, { rerank: RERANK, evalTexts: lines, measureMemory: false });
  assert.equal(report.passed, true, JSON.stringify(report.gates));
  assert.equal(report.details!.pairs, 48);
  assert.ok(report.metrics.spearman! >= 0.9 && report.metrics.max_abs_error! > 0);
  // A gate above what was measured fails, naming the metric.
  const strict = await verifyOnnxModel('rerank', src, out, { min_spearman: report.metrics.spearman! + 1e-6, runs: 1 }, { rerank: RERANK, evalTexts: lines, measureMemory: false });
  assert.equal(strict.passed, false);
  assert.equal(strict.gates[0]!.metric, 'spearman');
  await assert.rejects(verifyOnnxModel('rerank', src, out, { min_cosine: 0.9 }, { rerank: RERANK, evalTexts: lines }), (e: unknown) => e instanceof InputError && e.field === 'verify.min_cosine');
  await assert.rejects(verifyOnnxModel('rerank', src, out, { min_top1: 0.9 }, { rerank: RERANK, evalTexts: ['just a sentence'] }), (e: unknown) => e instanceof InputError && /queries with candidate passages/.test(e.message));
});

test('eval lines: JSON query groups or plain texts; a malformed JSON line is named', () => {
  assert.deepEqual(parseEvalSamples(['{"query": "q", "passages": ["a", "b"]}', 'plain text']), [{ query: 'q', passages: ['a', 'b'] }, { text: 'plain text' }]);
  assert.throws(() => parseEvalSamples(['plain', '{"query": "q", "passages": []}']), (e: unknown) => e instanceof InputError && /line 2/.test(e.message));
  assert.throws(() => parseEvalSamples(['{"query": '], 'models.embed.verify.eval'), (e: unknown) => e instanceof InputError && e.field === 'models.embed.verify.eval' && /line 1 is not valid JSON/.test(e.message));
});
