// Daemonless images without model bytes (`bake build --bundle-models false`): each model folder holds its
// manifest only, naming the layer the bundled image carries (the one `bake push` pushes) and its repository.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createContext } from '../../src/pipeline/context.js';
import { buildImages } from '../../src/pipeline/api.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { startHubServer } from '../support/hub-server.js';
import { ragHubRepos } from '../support/rag-models.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('--bundle-models false: manifest-only model layers naming the bundled image\'s model layers and their repository', { timeout: 5 * 60_000 }, async (t) => {
  const tmp = await mkdtemp(join(tmpdir(), 'bake-lean-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  const hub = await startHubServer({ repos: await ragHubRepos(join(tmp, 'repos')) });
  t.after(() => hub.close());
  const ctx = await createContext({ project: ROOT, store: join(tmp, 'store'), env: { ...process.env, HF_ENDPOINT: hub.url, HF_HOME: join(tmp, 'hf'), HF_TOKEN_PATH: '/nonexistent', SOURCE_DATE_EPOCH: '1700000000' } });
  const recipe = await loadRecipe('rag-service', ROOT);
  const bundled = await buildImages(ctx, recipe, { target: 'cpu', base: 'scratch', output: `oci:${join(tmp, 'bundled')}` });
  const lean = await buildImages(ctx, recipe, { target: 'cpu', base: 'scratch', output: `oci:${join(tmp, 'lean')}`, bundleModels: false, modelsRepository: '127.0.0.1:5000/ml/rag-service' });
  const [b, l] = [bundled.images[0]!, lean.images[0]!];
  assert.deepEqual(b.layers!.map((x) => x.what), ['runtime', 'model embed', 'model rerank']);
  assert.deepEqual(l.layers!.map((x) => x.what), ['runtime', 'manifest embed', 'manifest rerank']);
  for (const id of ['embed', 'rerank']) {
    const full = b.layers!.find((x) => x.what === `model ${id}`)!;
    const only = l.layers!.find((x) => x.what === `manifest ${id}`)!;
    assert.deepEqual(only.modelLayer, { digest: full.digest, size: full.size, repository: '127.0.0.1:5000/ml/rag-service' });
    assert.ok(only.size < 32 * 1024 && full.size > 100 * 1024, `${id}: ${only.size} vs ${full.size}`);
  }
  const modelBytes = b.layers!.filter((x) => x.what.startsWith('model ')).reduce((n, x) => n + x.size, 0);
  assert.ok(b.size! - l.size! > 0.95 * modelBytes, 'the lean image is smaller by the model layers');
  // The OCI manifests record each model layer: by digest in the bundled image, with its repository in the lean one.
  const manifestOf = async (dir: string, digest: string) => JSON.parse(await readFile(join(tmp, dir, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as { annotations: Record<string, string>; layers: { digest: string; annotations?: Record<string, string> }[] };
  const bm = await manifestOf('bundled', b.manifestDigest!);
  const lm = await manifestOf('lean', l.manifestDigest!);
  const embedLayer = b.layers!.find((x) => x.what === 'model embed')!.digest;
  assert.equal(bm.annotations['dev.bake.model.embed.layer'], embedLayer);
  assert.equal(bm.layers.find((x) => x.digest === embedLayer)!.annotations?.['dev.bake.model.id'], 'embed');
  assert.equal(lm.annotations['dev.bake.model.embed.layer'], `127.0.0.1:5000/ml/rag-service@${embedLayer}`);
  assert.equal(lm.layers[1]!.annotations?.['dev.bake.model.bundled'], 'false');
});
