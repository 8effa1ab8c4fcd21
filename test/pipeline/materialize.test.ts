// `bake materialize` (the Dockerfile models stage) writes each model's folder with fixed file times; the
// store's blobs (hard-linked with the Hugging Face cache's) must keep theirs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRecipe } from '../../src/recipe/load.js';
import { createContext } from '../../src/pipeline/context.js';
import { lockModels, materializeModels } from '../../src/pipeline/api.js';

const RECIPE = `image: { name: bake.test/m }
models:
  - { id: plain, path: ../models/plain, quantize: { format: none } }
targets:
  all: { base: scratch }
`;

test('materialize writes copies with SOURCE_DATE_EPOCH times and leaves the store blobs (and their times) alone', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-materialize-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'recipes'), { recursive: true });
  await mkdir(join(dir, 'models', 'plain'), { recursive: true });
  await writeFile(join(dir, 'recipes', 'm.yaml'), RECIPE);
  await writeFile(join(dir, 'models', 'plain', 'weights.bin.safetensors'), Buffer.alloc(4096, 7));
  const recipe = await parseRecipe(RECIPE, join(dir, 'recipes', 'm.yaml'));
  const ctx = async () => createContext({ project: dir, store: join(dir, 'store'), env: { ...process.env, SOURCE_DATE_EPOCH: '1000' } });
  await lockModels(await ctx(), recipe);
  const c = await ctx();
  const { models } = await materializeModels(c, recipe, { out: join(dir, 'out') });
  const file = join(models[0]!.dir, 'weights.bin.safetensors');
  const out = await stat(file);
  assert.equal(out.mtimeMs, 1000 * 1000, 'the shipped file has the fixed time');
  const { Store } = await import('../../src/store/store.js');
  const blob = await stat(new Store(join(dir, 'store')).blobPath((await import('node:crypto')).createHash('sha256').update(Buffer.alloc(4096, 7)).digest('hex')));
  assert.notEqual(blob.ino, out.ino, 'a copy, not a link to the store blob');
  assert.notEqual(blob.mtimeMs, 1000 * 1000, 'the store blob keeps its own time');
});
