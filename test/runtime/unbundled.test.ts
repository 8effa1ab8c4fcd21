// Images without model bytes: the runtime gets the quantized model at start, from the registry (the
// model's layer by digest) or, failing that, by fetching the locked source from the Hub and quantizing
// it with the pipeline's own steps; from the cache folder on the next start. The model here is
// recipes/rag-service.yaml's `embed`, as models.lock pins it (the loopback Hub's e5 stand-in).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createContext } from '../../src/pipeline/context.js';
import { materializeModels } from '../../src/pipeline/api.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { dirLayer } from '../../src/image/oci/layer.js';
import { loadModels, modelLayerOf, readManifest, unbundledManifest, type ModelManifest } from '../../src/runtime/index.js';
import { hubConfigFromEnv } from '../../src/hub/config.js';
import { NetworkError } from '../../src/util/errors.js';
import { prettyJson } from '../../src/util/json.js';
import { startHubServer, type HubServer } from '../support/hub-server.js';
import { ragHubRepos } from '../support/rag-models.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let tmp: string;
let hub: HubServer;
let bundled: string;
let manifest: ModelManifest;
let blob: Buffer;
let registry: Server;
let registryHost: string;
/** What the fake registry does: serve the blob, answer 404, or serve a damaged copy. */
let registryMode: 'serve' | 'missing' | 'flipped' = 'serve';
const registryHits: string[] = [];

async function files(dir: string): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[relative(dir, join(e.parentPath, e.name))] = await readFile(join(e.parentPath, e.name));
  }
  return out;
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'bake-unbundled-'));
  hub = await startHubServer({ repos: await ragHubRepos(join(tmp, 'repos')) });
  const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HOME: join(tmp, 'hf'), HF_TOKEN_PATH: '/nonexistent', SOURCE_DATE_EPOCH: '1700000000' };
  const ctx = await createContext({ project: ROOT, store: join(tmp, 'store'), env });
  const recipe = await loadRecipe('rag-service', ROOT);
  await materializeModels(ctx, recipe, { models: ['embed'], out: join(tmp, 'image') });
  bundled = join(tmp, 'image', 'embed');
  manifest = await readManifest(join(bundled, 'manifest.json'));
  // The layer `bake push` pushes for the model (what the bundled image carries).
  const layer = await dirLayer(bundled, 'app/models/embed', { compression: 'none', epoch: 1700000000 });
  const chunks: Buffer[] = [];
  for await (const c of await layer.open()) chunks.push(c as Buffer);
  blob = Buffer.concat(chunks);
  assert.deepEqual(await modelLayerOf(bundled, 'embed', 1700000000), { digest: layer.digest, size: layer.size });
  registry = createServer((req, res) => {
    registryHits.push(`${req.method} ${req.url}`);
    const m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? '');
    if (!m || m[1] !== 'ml/rag-service' || m[2] !== layer.digest || registryMode === 'missing') {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry' }] }));
    }
    const body = Buffer.from(blob);
    if (registryMode === 'flipped') body[body.length >> 1]! ^= 0xff;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'docker-content-digest': layer.digest });
    res.end(body);
  });
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
  registryHost = `127.0.0.1:${(registry.address() as AddressInfo).port}`;
});

after(async () => {
  await hub?.close();
  await new Promise<void>((r) => registry?.close(() => r()));
  await rm(tmp, { recursive: true, force: true });
});

/** An image folder holding the lean manifest only, and a fresh cache. */
async function leanImage(name: string): Promise<{ root: string; cache: string }> {
  const root = join(tmp, name, 'models');
  await mkdir(join(root, 'embed'), { recursive: true });
  const layer = await modelLayerOf(bundled, 'embed', 1700000000);
  await writeFile(join(root, 'embed', 'manifest.json'), prettyJson(unbundledManifest(manifest, { ...layer, repository: `${registryHost}/ml/rag-service` })));
  return { root, cache: join(tmp, name, 'cache') };
}

const start = (root: string, cache: string, lines: string[], extra: NodeJS.ProcessEnv = {}) =>
  loadModels({ root, log: (l) => lines.push(l), env: { BAKE_MODELS_CACHE: cache, ...extra }, hub: hubConfigFromEnv({ HF_TOKEN_PATH: '/nonexistent' }, { endpoint: hub.url, cacheDir: join(cache, 'hf'), retryBaseMs: 1 }) });

test('the lean manifest names the model layer (digest, size, repository) and the recipe\'s quantize spec', () => {
  assert.equal(manifest.quantization.format, 'onnx-int8');
  assert.deepEqual(manifest.quantization.spec, { format: 'onnx-int8' });
  assert.deepEqual(manifest.embedding?.prefixes, { query: 'query: ', passage: 'passage: ' });
  assert.ok(manifest.files.some((f) => f.path === 'onnx/model_quantized.onnx'));
});

test('registry: the quantized layer is pulled by digest, its files are the bundled image\'s to the byte; the next start uses the cache', async () => {
  registryMode = 'serve';
  const { root, cache } = await leanImage('registry');
  assert.deepEqual(await readdir(join(root, 'embed')), ['manifest.json'], 'no model bytes in the image folder');
  const lines: string[] = [];
  hub.stats.reset();
  const [m] = await start(root, cache, lines);
  assert.equal(m!.source, 'registry');
  assert.deepEqual(Object.keys(await files(m!.dir)).sort(), Object.keys(await files(bundled)).sort(), 'the layer\'s files: the model\'s and its manifest');
  for (const f of manifest.files) assert.deepEqual(await readFile(join(m!.dir, f.path)), await readFile(join(bundled, f.path)), f.path);
  assert.match(lines.join('\n'), /^pre-quantized embed loaded in \d+ ms \(pulled the quantized layer sha256:[0-9a-f]{12} \([\d.]+ MB\) from 127\.0\.0\.1:\d+\/ml\/rag-service in \d+ ms into .*\/cache\/embed\/[0-9a-f]{32}\)$/m);
  assert.equal(hub.stats.bytesServed, 0, 'nothing from the Hub');
  // Second start: from the cache folder (a volume), no request anywhere.
  registryHits.length = 0;
  const again = await start(root, cache, lines);
  assert.equal(again[0]!.source, 'cache');
  assert.equal(registryHits.length, 0);
});

test('no layer in the registry: the locked source is fetched from the Hub and quantized at start, byte-equal to the bundled files', async () => {
  registryMode = 'missing';
  const { root, cache } = await leanImage('quantize');
  const lines: string[] = [];
  const [m] = await start(root, cache, lines);
  assert.equal(m!.source, 'quantized');
  for (const f of manifest.files) assert.deepEqual(await readFile(join(m!.dir, f.path)), await readFile(join(bundled, f.path)), f.path);
  const text = lines.join('\n');
  assert.match(text, /embed: the registry did not give its quantized layer \(fetching the layer of embed: 127\.0\.0\.1:\d+ answered 404/);
  assert.match(text, /embed: fetching intfloat\/e5-base-v2@[0-9a-f]{12} \(7 files, [\d.]+ MB\) from http:\/\/127\.0\.0\.1:\d+ to quantize at start/);
  assert.match(text, /pre-quantized embed loaded in \d+ ms \(quantized at start from intfloat\/e5-base-v2@[0-9a-f]{12} in \d+ ms \(fetch \d+ ms, quantize \d+ ms\) into /);
});

test('a damaged layer is refused by its digest and the runtime falls back to quantizing; with neither registry nor Hub it stops with a network error', async () => {
  registryMode = 'flipped';
  const { root, cache } = await leanImage('flipped');
  const lines: string[] = [];
  const [m] = await start(root, cache, lines);
  assert.equal(m!.source, 'quantized');
  assert.match(lines.join('\n'), /integrity check failed for layer sha256:/);
  registryMode = 'missing';
  const dead = await leanImage('dead');
  await assert.rejects(
    loadModels({ root: dead.root, env: { BAKE_MODELS_CACHE: dead.cache }, hub: hubConfigFromEnv({ HF_TOKEN_PATH: '/nonexistent' }, { endpoint: 'http://127.0.0.1:9', cacheDir: join(dead.cache, 'hf'), retries: 0, retryBaseMs: 1 }) }),
    (e: unknown) => e instanceof NetworkError,
  );
});
