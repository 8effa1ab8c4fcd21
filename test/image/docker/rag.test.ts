// The RAG service end to end on the real engine and registry: recipes/rag-service.yaml locked, pulled,
// quantized and verified against the loopback Hub's stand-ins (test/support/rag-models.ts), built for cpu
// and cuda (a stand-in CUDA base: built and inspected, not run); the cpu image serves TEI's /embed and
// /rerank, OpenAI's /v1/embeddings (through the openai npm client), /health and /metrics with
// --network none; the BUNDLE_MODELS=false image pulls the quantized layers `bake push` pushed, or
// quantizes at start without them, and serves the same bytes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRecipe } from '../../../src/recipe/load.js';
import type { Recipe } from '../../../src/recipe/types.js';
import { buildRecipe, buildTarget, connectEngine, ensureBakeImage, inspectImage } from '../../../src/image/docker/index.js';
import { writeBuildFiles } from '../../../src/image/dockerfile/index.js';
import { startHubServer, type HubServer } from '../../support/hub-server.js';
import { ragHubRepos } from '../../support/rag-models.js';
import { modelFilesInImage } from '../../support/image-files.js';
import { freePort } from '../../support/registry.js';
import { bakeCli, bakeCliOk, docker, dockerOk, REPO_ROOT, runUntil, startDockerEnv, type DockerTestEnv } from '../../support/docker-env.js';

const NODE_IMAGE = 'local/node:20-bookworm-slim';
const CUDA_BASE = 'local/cuda-runtime:stand-in';
/** Its own builder tag: other test files build bake-builder:local from their own sources. */
const BUILDER = 'bake-builder:rag-test';
const EPOCH = '1700000000';
const BASES = { BASE_IMAGE_CPU: NODE_IMAGE, BASE_IMAGE_CUDA: CUDA_BASE };

let env: DockerTestEnv;
let hub: HubServer;
let project: string;
let recipe: Recipe;
let dockerfile: string;
let registryRepo: string;
const containers: string[] = [];
const built: Record<string, string> = {};
let bundledId: string;
/** The bundled image's answer to EMBED_REQUEST (bytes as sent). */
let bundledEmbed: string;
const EMBED_REQUEST = { inputs: ['what is the capital of Australia', 'Canberra is the capital city of Australia.'], prompt_name: 'query' };

before(async () => {
  env = startDockerEnv();
  project = await mkdtemp(join(tmpdir(), 'bake-rag-'));
  hub = await startHubServer({ repos: await ragHubRepos(join(tmpdir(), 'bake-rag-standins')) });
  await mkdir(join(project, 'recipes', 'rag-service'), { recursive: true });
  await cp(join(REPO_ROOT, 'recipes', 'rag-service.yaml'), join(project, 'recipes', 'rag-service.yaml'));
  await cp(join(REPO_ROOT, 'recipes', 'rag-service', 'eval.jsonl'), join(project, 'recipes', 'rag-service', 'eval.jsonl'));
  registryRepo = `${env.registry}/bake-test/rag-service`;
  await ensureBakeImage({ docker: connectEngine(), tag: BUILDER, nodeImage: NODE_IMAGE });
});

after(async () => {
  for (const id of containers) await docker(['rm', '-f', id]);
  await hub?.close();
  if (project) await rm(project, { recursive: true, force: true });
  env?.stop();
});

const cliEnv = () => ({ HF_ENDPOINT: hub.url, HF_HOME: join(project, '.hf'), HF_TOKEN_PATH: '/nonexistent', BAKE_STORE: join(project, '.store'), SOURCE_DATE_EPOCH: EPOCH });

test('lock, pull, quantize and verify recipes/rag-service.yaml against the loopback Hub; the committed models.lock pins the same stand-ins', { timeout: 10 * 60_000 }, async () => {
  await bakeCliOk(['-C', project, 'lock', 'rag-service'], project, cliEnv());
  const lock = JSON.parse(await readFile(join(project, 'models.lock'), 'utf8'));
  const committed = JSON.parse(await readFile(join(REPO_ROOT, 'models.lock'), 'utf8'));
  for (const key of ['rag-service/embed', 'rag-service/rerank']) {
    assert.deepEqual(lock.models?.[key] ?? lock[key], committed.models?.[key] ?? committed[key], key);
  }
  const pulled = JSON.parse(await bakeCliOk(['-C', project, '--json', 'pull', 'rag-service'], project, cliEnv()));
  assert.deepEqual(pulled.models.map((m: { id: string }) => m.id), ['embed', 'rerank']);
  const quantized = JSON.parse(await bakeCliOk(['-C', project, '--json', 'quantize', 'rag-service'], project, cliEnv()));
  for (const m of quantized.models) assert.ok(m.files.includes('onnx/model_quantized.onnx'), JSON.stringify(m.files));
  const verified = JSON.parse(await bakeCliOk(['-C', project, '--json', 'verify', 'rag-service'], project, cliEnv()));
  const [embed, rerank] = verified.reports;
  assert.equal(embed.details.compared, 'pooled embeddings');
  assert.ok(embed.gates.some((g: { gate: string; passed: boolean }) => g.gate === 'min_cosine' && g.passed));
  assert.equal(rerank.details.compared, 'scores of (query, passage) pairs, ranked per query');
  assert.ok(rerank.gates.some((g: { gate: string; passed: boolean }) => g.gate === 'min_spearman' && g.passed));
  recipe = await loadRecipe('rag-service', project);
  dockerfile = (await writeBuildFiles({ root: project, recipe, bakeImage: BUILDER })).dockerfile;
});

test('build cpu and cuda through the engine (models stages reach the loopback Hub); tags name the model and target', { timeout: 20 * 60_000 }, async () => {
  const result = await buildRecipe({
    root: project, recipe, targets: ['cpu', 'cuda'], network: 'host', ensureBuilder: false,
    buildArgs: { ...BASES, HF_ENDPOINT: hub.url, SOURCE_DATE_EPOCH: EPOCH, BAKE_IMAGE: BUILDER },
  });
  for (const img of result.images) built[img.target] = img.imageId;
  assert.deepEqual(result.images[0]!.tags.slice(0, 2), ['registry.example.com/ml/rag-service:1.4.0-e5-base-int8-cpu', 'registry.example.com/ml/rag-service:1.4.0-cpu']);
  const cuda = (await inspectImage(connectEngine(), built.cuda!))!;
  const base = (await inspectImage(connectEngine(), CUDA_BASE))!;
  assert.deepEqual(cuda.layers.slice(0, base.layers.length), base.layers, 'built on the CUDA base');
  assert.deepEqual(cuda.entrypoint, ['/opt/bake-runtime/bin/node', '/opt/bake-runtime/app/bake-runtime.mjs', 'serve', '--'], 'the CUDA base has no node: the runtime brings its own');
  assert.ok(cuda.env.includes('BAKE_DEVICE=cuda') && cuda.env.includes('BAKE_SERVER=onnx'));
  assert.ok(cuda.env.includes('NVIDIA_VISIBLE_DEVICES=all') && cuda.env.includes('CUDA_VERSION=12.4.1'), 'the base\'s NVIDIA environment is kept');
  const paths = (await modelFilesInImage(built.cuda!)).map((f) => f.path);
  assert.ok(paths.includes('app/models/embed/onnx/model_quantized.onnx') && paths.includes('app/models/rerank/onnx/model_quantized.onnx'));
  assert.ok(!paths.some((p) => p.endsWith('/onnx/model.onnx')), 'the INT8 models ship, not their fp32 originals');
});

/** A request to the server inside container `id` (which has no network), from a node in that container. */
async function call(id: string, path: string, body?: unknown, raw?: string): Promise<{ status: number; text: string }> {
  const payload = raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const js = `fetch('http://127.0.0.1:8080${path}', ${payload === undefined ? '{}' : `{ method: 'POST', headers: { 'content-type': 'application/json' }, body: ${JSON.stringify(payload)} }`}).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, text: await r.text() })))`;
  return JSON.parse(await dockerOk(['exec', id, 'node', '-e', js])) as { status: number; text: string };
}

async function untilHealthy(id: string, path = '/health', timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const r = await docker(['exec', id, 'node', '-e', `fetch('http://127.0.0.1:8080${path}').then((r) => process.exit(r.status === 200 ? 0 : 3), () => process.exit(4))`]);
    if (r.code === 0) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`container ${id} not healthy after ${timeoutMs} ms:\n${(await docker(['logs', id])).stdout}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

test('the cpu image runs with --network none and answers /embed, /rerank, /v1/embeddings (openai client), /health and /metrics; a malformed request is a 4xx JSON error and the next one succeeds', { timeout: 10 * 60_000 }, async (t) => {
  const run = await runUntil(['--network', 'none', built.cpu!], /serving 2 ONNX model/, 120_000);
  containers.push(run.id);
  bundledId = run.id;
  assert.ok(!run.exited, run.logs);
  assert.match(run.logs, /listening on :8080; \/health answers 503 until the models are loaded/);
  assert.match(run.logs, /pre-quantized embed loaded in \d+ ms/);
  assert.match(run.logs, /pre-quantized rerank loaded in \d+ ms/);
  assert.match(run.logs, /onnxruntime opened embed: \/app\/models\/embed\/onnx\/model_quantized\.onnx .* as an embedder on cpu/);
  await untilHealthy(run.id);
  const health = await call(run.id, '/health');
  assert.equal(health.status, 200);
  assert.deepEqual(JSON.parse(health.text).models.map((m: { id: string; kind: string }) => [m.id, m.kind]), [['embed', 'embed'], ['rerank', 'rerank']]);

  const embed = await call(run.id, '/embed', EMBED_REQUEST);
  assert.equal(embed.status, 200, embed.text);
  const vectors = JSON.parse(embed.text) as number[][];
  assert.equal(vectors.length, 2);
  assert.ok(Math.abs(Math.hypot(...vectors[0]!) - 1) < 1e-5, 'L2-normalized');
  bundledEmbed = embed.text;

  const rerank = await call(run.id, '/rerank', { query: 'what is the capital of Australia', texts: ['Kangaroos can hop fast.', 'Canberra is the capital city of Australia.'], return_text: true });
  assert.equal(rerank.status, 200, rerank.text);
  const ranks = JSON.parse(rerank.text) as { index: number; score: number; text: string }[];
  assert.equal(ranks.length, 2);
  assert.ok(ranks[0]!.score >= ranks[1]!.score && ranks.every((r) => r.score > 0 && r.score < 1 && typeof r.text === 'string'));

  // The official openai client, run inside the container (no network): copied in with its package.
  const dir = await mkdtemp(join(tmpdir(), 'bake-rag-openai-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'node_modules'));
  await cp(join(REPO_ROOT, 'node_modules', 'openai'), join(dir, 'node_modules', 'openai'), { recursive: true });
  await writeFile(join(dir, 'client.mjs'), [
    "import OpenAI from 'openai';",
    "const client = new OpenAI({ baseURL: 'http://127.0.0.1:8080/v1', apiKey: 'none', maxRetries: 0 });",
    "const r = await client.embeddings.create({ model: 'intfloat/e5-base-v2', input: ['query: what is the capital of Australia', 'query: Canberra is the capital city of Australia.'] });",
    'let bad; try { await client.embeddings.create({ model: \'embed\', input: [] }); } catch (e) { bad = { status: e.status, message: e.message }; }',
    'process.stdout.write(JSON.stringify({ model: r.model, usage: r.usage, data: r.data.map((d) => d.embedding), bad }));',
    '',
  ].join('\n'));
  await dockerOk(['cp', dir, `${run.id}:/tmp/openai-client`]);
  const out = JSON.parse(await dockerOk(['exec', run.id, 'node', `/tmp/openai-client/client.mjs`])) as { model: string; usage: { prompt_tokens: number }; data: number[][]; bad: { status: number; message: string } };
  assert.equal(out.model, 'embed');
  assert.ok(out.usage.prompt_tokens > 4);
  // The client decodes base64 (its default encoding) back to the same float32 values /embed sends.
  out.data.forEach((v, i) => assert.deepEqual(v, Array.from(Float32Array.from(vectors[i]!)), `vector ${i}`));
  assert.equal(out.bad.status, 422);

  // Malformed: bad JSON, a wrong type, a missing field; each a 4xx JSON error, then a good request succeeds.
  for (const [path, raw] of [['/embed', '{"inputs": '], ['/embed', '{"inputs": 42}'], ['/rerank', '{"query": "q"}']] as const) {
    const r = await call(run.id, path, undefined, raw);
    assert.ok(r.status >= 400 && r.status < 500, `${raw}: ${r.status}`);
    assert.equal(typeof JSON.parse(r.text).error, 'string');
    const next = await call(run.id, '/embed', EMBED_REQUEST);
    assert.equal(next.status, 200);
    assert.equal(next.text, bundledEmbed, 'the same request answers the same bytes');
  }
  const metrics = await call(run.id, '/metrics');
  assert.equal(metrics.status, 200);
  for (const name of ['bake_requests_total{route="/embed",status="200"}', 'bake_requests_total{route="/embed",status="400"}', 'bake_request_duration_seconds_bucket', 'bake_batch_size_bucket', 'bake_model_load_seconds{model="embed",source="image"}', 'bake_process_resident_memory_bytes']) {
    assert.ok(metrics.text.includes(name), name);
  }
});

test('bake push also pushes each model layer; the pushed manifest names every model layer\'s digest', { timeout: 10 * 60_000 }, async () => {
  const base = `${env.registry}/bake-test/node:20-bookworm-slim`;
  await dockerOk(['tag', NODE_IMAGE, base]);
  await dockerOk(['push', base]);
  const r = await bakeCli(['-C', project, '--json', 'push', 'rag-service', '--to', registryRepo, '--target', 'cpu', '--base', base], project, cliEnv());
  assert.equal(r.code, 0, r.stderr);
  const image = JSON.parse(r.stdout).images[0];
  const res = await fetch(`http://${registryRepo.replace('/', '/v2/')}/manifests/${image.pushed.manifestDigest}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const manifest = (await res.json()) as { annotations: Record<string, string>; layers: { digest: string; size: number; annotations?: Record<string, string> }[] };
  for (const id of ['embed', 'rerank']) {
    const digest = manifest.annotations[`dev.bake.model.${id}.layer`]!;
    const layer = manifest.layers.find((l) => l.digest === digest);
    assert.ok(layer, `${id}: the manifest's layer list holds ${digest}`);
    assert.equal(layer!.annotations?.['dev.bake.model.id'], id);
    assert.equal((await fetch(`http://${registryRepo.replace('/', '/v2/')}/blobs/${digest}`, { method: 'HEAD' })).status, 200);
  }
});

test('BUNDLE_MODELS=false: no model bytes in the image; at start it pulls the quantized layers from the loopback registry, or without them quantizes at start; both serve the bundled image\'s bytes', { timeout: 20 * 60_000 }, async () => {
  const { imageId } = await buildTarget({
    recipe, target: 'cpu', contextDir: project, dockerfile, tag: 'bake.test/rag:cpu-lean', network: 'host', ensureBuilder: false,
    buildArgs: { ...BASES, BUNDLE_MODELS: 'false', BAKE_MODELS_REPOSITORY: registryRepo, SOURCE_DATE_EPOCH: EPOCH, HF_ENDPOINT: hub.url, BAKE_IMAGE: BUILDER },
  });
  const files = await modelFilesInImage(imageId);
  assert.deepEqual(files.map((f) => f.path).sort(), ['app/models/embed/manifest.json', 'app/models/rerank/manifest.json']);
  assert.ok(files.every((f) => f.size < 16384));
  const lean = JSON.parse(await dockerOk(['run', '--rm', '--network', 'none', '--entrypoint', 'cat', imageId, '/app/models/embed/manifest.json']));
  assert.equal(lean.bundled, false);
  assert.equal(lean.layer.repository, registryRepo);
  const pushed = (await (await fetch(`http://${registryRepo.replace('/', '/v2/')}/manifests/1.4.0-e5-base-int8-cpu`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { annotations: Record<string, string> };
  assert.equal(lean.layer.digest, pushed.annotations['dev.bake.model.embed.layer'], 'the lean image names the layer bake push pushed');

  // Registry path (host network to reach the loopback registry; the Hub is out of reach on purpose).
  const port = await freePort();
  const viaRegistry = await runUntil(['--network', 'host', '-e', `BAKE_PORT=${port}`, '-e', 'HF_ENDPOINT=http://127.0.0.1:9', imageId], /serving 2 ONNX model|error:/, 180_000);
  containers.push(viaRegistry.id);
  assert.ok(!viaRegistry.exited, viaRegistry.logs);
  assert.match(viaRegistry.logs, new RegExp(`pre-quantized embed loaded in \\d+ ms \\(pulled the quantized layer sha256:[0-9a-f]{12} \\([\\d.]+ MB\\) from ${registryRepo.replace(/\./g, '\\.')} in \\d+ ms`));
  assert.match(viaRegistry.logs, /pre-quantized rerank loaded in \d+ ms \(pulled the quantized layer/);
  const a = await fetch(`http://127.0.0.1:${port}/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(EMBED_REQUEST) });
  assert.equal(a.status, 200);
  assert.equal(await a.text(), bundledEmbed, 'byte-equal to the bundled image\'s answer');

  // Registry without the layers: the locked source from the loopback Hub, quantized at start.
  const port2 = await freePort();
  const viaQuantize = await runUntil(['--network', 'host', '-e', `BAKE_PORT=${port2}`, '-e', `BAKE_MODELS_REGISTRY=${env.registry}/bake-test/no-such-models`, '-e', `HF_ENDPOINT=${hub.url}`, imageId], /serving 2 ONNX model|error:/, 300_000);
  containers.push(viaQuantize.id);
  assert.ok(!viaQuantize.exited, viaQuantize.logs);
  assert.match(viaQuantize.logs, /embed: the registry did not give its quantized layer .*; fetching the source from the Hub and quantizing at start/);
  assert.match(viaQuantize.logs, /pre-quantized embed loaded in \d+ ms \(quantized at start from intfloat\/e5-base-v2@[0-9a-f]{12} in \d+ ms \(fetch \d+ ms, quantize \d+ ms\)/);
  assert.match(viaQuantize.logs, /pre-quantized rerank loaded in \d+ ms \(quantized at start from BAAI\/bge-reranker-base@/);
  const b = await fetch(`http://127.0.0.1:${port2}/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(EMBED_REQUEST) });
  assert.equal(await b.text(), bundledEmbed, 'byte-equal to the bundled image\'s answer');
  // Nothing reachable at all: the start fails and says why (exit 4: network).
  const offline = await docker(['run', '--rm', '--network', 'none', imageId], { timeoutMs: 3 * 60_000 });
  assert.equal(offline.code, 4, offline.stdout + offline.stderr);
  assert.match(offline.stdout + offline.stderr, /could not be fetched/);
});

