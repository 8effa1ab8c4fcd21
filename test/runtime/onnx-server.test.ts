// The onnx server (src/runtime/onnx) on the RAG stand-ins, quantized as the recipe says and laid out as an
// image's /app/models: TEI's /embed and /rerank, OpenAI's /v1/embeddings through the openai client,
// /health, /metrics, micro-batching, bounds and malformed requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import OpenAI from 'openai';
import { quantizeOnnxModel } from '../../src/quant/onnx/index.js';
import type { EmbeddingSpec, RerankSpec } from '../../src/recipe/types.js';
import { sha256Bytes } from '../../src/util/digest.js';
import { prettyJson } from '../../src/util/json.js';
import { buildServer, createMetrics, DEFAULT_LIMITS, serveOnnx, type OnnxServing } from '../../src/runtime/onnx/index.js';
import { cosine } from '../../src/verify/onnx/index.js';
import { writeBgeRerankerRepo, writeE5Repo } from '../support/rag-models.js';

const E5: EmbeddingSpec = { pooling: 'mean', normalize: true, prefixes: { query: 'query: ', passage: 'passage: ' }, max_tokens: 32 };
const RERANK: RerankSpec = { activation: 'sigmoid', max_tokens: 64 };

let root: string;
let server: OnnxServing;
let url: string;
const lines: string[] = [];

async function listFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name))).sort();
}

/** A model folder as the package step writes it: the quantized files + manifest.json. */
async function packaged(models: string, id: string, src: string, task: string, extra: Record<string, unknown>): Promise<void> {
  const dir = join(models, id);
  await quantizeOnnxModel(src, dir, { format: 'onnx-int8' }, { task });
  const files = [];
  for (const path of await listFiles(dir)) {
    const bytes = await readFile(join(dir, path));
    files.push({ path, sha256: sha256Bytes(bytes), size: bytes.length });
  }
  await writeFile(join(dir, 'manifest.json'), prettyJson({ schema: 'bake.model.v1', id, task, source: { type: 'hub', repo: extra.repo, commit: 'c'.repeat(40), files: [] }, files, quantization: { format: 'onnx-int8' }, ...extra, repo: undefined }));
}

const post = (path: string, body: unknown, raw?: string) => fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw ?? JSON.stringify(body) });

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bake-onnx-server-'));
  const models = join(root, 'models');
  await mkdir(models);
  await packaged(models, 'embed', await writeE5Repo(join(root, 'e5')), 'feature-extraction', { embedding: E5, repo: 'intfloat/e5-base-v2' });
  await packaged(models, 'rerank', await writeBgeRerankerRepo(join(root, 'bge')), 'text-classification', { rerank: RERANK, repo: 'BAAI/bge-reranker-base' });
  server = await serveOnnx({ root: models, device: 'cpu', port: 0, host: '127.0.0.1', log: (l) => lines.push(l), limits: { bodyLimit: 64 * 1024, maxInputs: 16 } });
  url = `http://127.0.0.1:${server.port}`;
  await server.ready;
});

after(async () => {
  server?.stop();
  await server?.done;
  await rm(root, { recursive: true, force: true });
});

test('start: one "pre-quantized <id> loaded in N ms" line per model, the quantized files opened, then 200 on /health', async () => {
  assert.ok(lines.some((l) => /^pre-quantized embed loaded in \d+ ms$/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /^pre-quantized rerank loaded in \d+ ms$/.test(l)));
  assert.ok(lines.some((l) => /^onnxruntime opened embed: .*\/embed\/onnx\/model_quantized\.onnx .* as an embedder on cpu$/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /^serving 2 ONNX model\(s\) on :\d+ \(\/embed, \/v1\/embeddings, \/rerank, \/health, \/metrics\)$/.test(l)));
  const res = await fetch(`${url}/health`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { status: string; models: { id: string; kind: string }[] };
  assert.deepEqual(body.models.map((m) => [m.id, m.kind]), [['embed', 'embed'], ['rerank', 'rerank']]);
});

test('before the models are loaded, /health is 503 and the model routes say so', async () => {
  const state = { ready: false, models: [], progress: { embed: 'fetching from the registry' } };
  const app = buildServer(state, createMetrics(), DEFAULT_LIMITS);
  const health = await app.inject({ method: 'GET', url: '/health' });
  assert.equal(health.statusCode, 503);
  assert.deepEqual(health.json(), { status: 'loading', models: { embed: 'fetching from the registry' } });
  const embed = await app.inject({ method: 'POST', url: '/embed', payload: { inputs: 'x' } });
  assert.equal(embed.statusCode, 503);
  assert.equal(embed.json().error_type, 'Unhealthy');
  await app.close();
});

test('/embed (TEI): one vector per input, mean-pooled and L2-normalized; normalize false, prompt_name prefixes', async () => {
  const one = await post('/embed', { inputs: 'what is the capital of Australia' });
  assert.equal(one.status, 200);
  const [v] = (await one.json()) as number[][];
  assert.equal(v!.length, 64);
  assert.ok(Math.abs(Math.hypot(...v!) - 1) < 1e-5);
  const many = (await (await post('/embed', { inputs: ['a', 'what is the capital of Australia'] })).json()) as number[][];
  assert.equal(many.length, 2);
  assert.ok(cosine(many[1]!, v!) > 0.9999);
  const raw = (await (await post('/embed', { inputs: 'what is the capital of Australia', normalize: false })).json()) as number[][];
  assert.ok(Math.abs(Math.hypot(...raw[0]!) - 1) > 1e-3, 'not normalized');
  assert.ok(cosine(raw[0]!, v!) > 0.9999);
  // prompt_name "query" puts the recipe's "query: " before the text.
  const named = (await (await post('/embed', { inputs: 'what is the capital of Australia', prompt_name: 'query' })).json()) as number[][];
  const written = (await (await post('/embed', { inputs: 'query: what is the capital of Australia' })).json()) as number[][];
  assert.deepEqual(named, written);
  assert.ok(cosine(named[0]!, v!) < 0.9999);
  const unknown = await post('/embed', { inputs: 'x', prompt_name: 'document' });
  assert.equal(unknown.status, 422);
  assert.match(((await unknown.json()) as { error: string }).error, /prompt_name `document` is not one of the model.s prompts \(passage, query\)/);
});

test('/rerank (TEI): scored pairs sorted best first, sigmoid unless raw_scores, texts on request', async () => {
  const texts = ['Canberra is the capital city of Australia.', 'Kangaroos can hop fast.', 'The train leaves every fifteen minutes.'];
  const res = await post('/rerank', { query: 'what is the capital of Australia', texts, return_text: true });
  assert.equal(res.status, 200);
  const ranks = (await res.json()) as { index: number; score: number; text: string }[];
  assert.deepEqual(ranks.map((r) => r.index).sort(), [0, 1, 2]);
  for (let i = 1; i < ranks.length; i++) assert.ok(ranks[i - 1]!.score >= ranks[i]!.score);
  assert.ok(ranks.every((r) => r.score > 0 && r.score < 1 && r.text === texts[r.index]));
  const raw = (await (await post('/rerank', { query: 'what is the capital of Australia', texts, raw_scores: true })).json()) as { index: number; score: number; text?: string }[];
  assert.ok(raw.every((r) => r.text === undefined));
  for (const r of raw) assert.ok(Math.abs(1 / (1 + Math.exp(-r.score)) - ranks.find((x) => x.index === r.index)!.score) < 1e-6);
  const empty = await post('/rerank', { query: 'q', texts: [] });
  assert.equal(empty.status, 422);
});

test('/v1/embeddings through the official openai client: float and base64 (its default) give /embed\'s vectors, usage counted', async () => {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const input = ['what is the capital of Australia', 'Canberra is the capital city of Australia.'];
  const tei = (await (await post('/embed', { inputs: input })).json()) as number[][];
  const b64 = await client.embeddings.create({ model: 'intfloat/e5-base-v2', input });
  assert.equal(b64.model, 'embed');
  assert.equal(b64.data.length, 2);
  assert.ok(b64.usage.prompt_tokens > 4 && b64.usage.total_tokens === b64.usage.prompt_tokens);
  const flt = await client.embeddings.create({ model: 'embed', input, encoding_format: 'float' });
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(flt.data[i]!.embedding, tei[i]);
    assert.deepEqual(b64.data[i]!.embedding, Array.from(Float32Array.from(tei[i]!)));
  }
  // An OpenAI-style error for a malformed call, which the client raises as a 4xx APIError.
  await assert.rejects(client.embeddings.create({ model: 'embed', input: [] }), (e: unknown) => e instanceof OpenAI.APIError && e.status === 422 && /cannot be empty/.test(e.message));
});

test('bounds: too many tokens is 413 unless truncate; too many inputs and too large a body are 413; malformed requests are 4xx JSON and the server keeps serving', async () => {
  const long = Array.from({ length: 80 }, () => 'capital').join(' ');
  const refused = await post('/embed', { inputs: ['short', long] });
  assert.equal(refused.status, 413);
  assert.match(((await refused.json()) as { error: string }).error, /input 1 has \d+ tokens, more than the model's 32/);
  const truncated = await post('/embed', { inputs: ['short', long], truncate: true });
  assert.equal(truncated.status, 200);
  const rr = await post('/rerank', { query: 'q', texts: [long] });
  assert.equal(rr.status, 413);
  assert.equal((await post('/rerank', { query: 'q', texts: [long], truncate: true })).status, 200);
  assert.equal((await post('/embed', { inputs: Array.from({ length: 17 }, () => 'x') })).status, 413);
  const big = await post('/embed', { inputs: 'x'.repeat(70 * 1024) });
  assert.equal(big.status, 413);
  for (const [body, status] of [['{"inputs": ', 400], ['{"inputs": 5}', 422], ['{"texts": ["a"]}', 422], ['{"inputs": "x", "truncation_direction": "left"}', 422]] as const) {
    const res = await post('/embed', undefined, body);
    assert.equal(res.status, status, body);
    const err = (await res.json()) as { error: string; error_type: string };
    assert.equal(typeof err.error, 'string');
    assert.ok(err.error_type);
  }
  const notFound = await fetch(`${url}/nope`);
  assert.equal(notFound.status, 404);
  assert.equal((await post('/embed', { inputs: 'still serving' })).status, 200);
});

test('concurrent requests share forward passes (micro-batching) and get their own vectors back; /metrics shows it', async () => {
  const texts = Array.from({ length: 12 }, (_, i) => `passage number ${i} about the capital`);
  const alone = await Promise.all(texts.map(async (t) => ((await (await post('/embed', { inputs: t })).json()) as number[][])[0]!));
  const before = await metricsText();
  const together = await Promise.all(texts.map(async (t) => ((await (await post('/embed', { inputs: t })).json()) as number[][])[0]!));
  const after = await metricsText();
  together.forEach((v, i) => assert.ok(cosine(v, alone[i]!) > 0.9999, `text ${i}`));
  const count = (m: string) => Number(/bake_batch_size_count\{model="embed"\} (\d+)/.exec(m)?.[1]);
  const sum = (m: string) => Number(/bake_batch_size_sum\{model="embed"\} (\d+)/.exec(m)?.[1]);
  const batches = count(after) - count(before);
  assert.equal(sum(after) - sum(before), 12);
  assert.ok(batches < 12, `12 concurrent requests ran in ${batches} forward passes`);
  for (const name of ['bake_requests_total{route="/embed",status="200"}', 'bake_request_duration_seconds_bucket', 'bake_model_load_seconds{model="embed",source="image"}', 'bake_input_tokens_total{model="rerank"}', 'bake_process_resident_memory_bytes', 'bake_ready 1']) {
    assert.ok(after.includes(name), name);
  }
  assert.match(after, /bake_requests_total\{route="\/embed",status="413"\} \d+/);
});

async function metricsText(): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  return res.text();
}

test('device cuda without onnxruntime\'s CUDA provider (no GPU here): the session opens on cpu and says so', async () => {
  const lines2: string[] = [];
  const s = await serveOnnx({ root: join(root, 'models'), ids: ['embed'], device: 'cuda', port: 0, host: '127.0.0.1', log: (l) => lines2.push(l) });
  try {
    await s.ready;
    assert.ok(lines2.some((l) => /^warning: embed: onnxruntime's cuda execution provider is not available \(.+\); running on cpu$/.test(l)), lines2.join('\n'));
    assert.ok(lines2.some((l) => /^onnxruntime opened embed: .* as an embedder on cpu$/.test(l)));
    const res = await fetch(`http://127.0.0.1:${s.port}/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"inputs": "x"}' });
    assert.equal(res.status, 200);
  } finally {
    s.stop();
    await s.done;
  }
});
