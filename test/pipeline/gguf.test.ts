// GGUF models through the CLI as a user builds them (daemonless, no Hub, no llama.cpp tools): what the
// cache holds and what ships must depend on the recipe and the lock only, never on what the store ran
// before (file names, general.name, report names); a checkpoint that does not match its config.json stops
// the build before anything is cached.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { kvValue, readGguf } from '../../src/formats/gguf/index.js';
import { readSafetensorsHeader, readTensorRaw } from '../../src/formats/safetensors/index.js';
import { bake } from '../support/cli.js';
import { encodeSafetensors, writeRandomLlama, type StTensor } from '../support/gguf-fixtures.js';
import { tarFiles } from '../support/image-files.js';

let dir: string;
before(async () => { dir = await mkdtemp(join(tmpdir(), 'bake-gguf-pipeline-')); });
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

const SHAPE = { embd: 64, ff: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: false };

/** A project folder with one recipe `two` (models alpha and beta, both from `folder`), locked. */
async function project(name: string, folder: string, models: string[], edit?: (ts: StTensor[]) => StTensor[], verify = '{ skip: true }'): Promise<{ root: string; env: Record<string, string> }> {
  const root = join(dir, name);
  const modelDir = join(root, 'models', folder);
  await writeRandomLlama(modelDir, SHAPE, 4);
  if (edit) {
    const f = await readSafetensorsHeader(join(modelDir, 'model.safetensors'));
    const ts: StTensor[] = [];
    for (const [n, t] of f.tensors) ts.push({ name: n, dtype: 'F32', shape: [...t.shape], data: await readTensorRaw(t) });
    await writeFile(join(modelDir, 'model.safetensors'), encodeSafetensors(edit(ts)));
  }
  await mkdir(join(root, 'recipes'), { recursive: true });
  const entries = models.map((id) => `  - id: ${id}\n    path: ../models/${folder}\n    quantize: { format: gguf, type: Q8_0 }\n    verify: ${verify}\n`);
  await writeFile(join(root, 'recipes', 'two.yaml'), `image: { name: acme/two, version: 1.0.0 }\nmodels:\n${entries.join('')}targets: { cpu: { base: scratch } }\n`);
  const env = { SOURCE_DATE_EPOCH: '1700000000', BAKE_STORE: join(root, 'store'), HF_HUB_OFFLINE: '1' };
  const lock = await bake(['-C', root, 'lock', 'two'], { cwd: root, env });
  assert.equal(lock.code, 0, lock.stderr);
  return { root, env };
}


/** Files of every layer of the single image in an OCI layout. */
async function imageFiles(layout: string, manifestDigest: string): Promise<Map<string, Buffer>> {
  const blob = (d: string) => join(layout, 'blobs', 'sha256', d.replace(/^sha256:/, ''));
  const manifest = JSON.parse(await readFile(blob(manifestDigest), 'utf8')) as { layers: { digest: string }[] };
  const all = new Map<string, Buffer>();
  for (const l of manifest.layers) for (const [k, v] of await tarFiles(blob(l.digest))) all.set(k, v);
  return all;
}

test('two models sharing one GGUF conversion: the same digest from a fresh store and from one that ran the other model first', { timeout: 600_000 }, async () => {
  const { root, env } = await project('shared', 'Tiny-Story-Llama-v0.1', ['alpha', 'beta']);
  const fresh = await bake(['-C', root, '--json', 'build', 'two', '--output', `oci:${join(root, 'out-fresh')}`], { cwd: root, env: { ...env, BAKE_STORE: join(root, 'store-fresh') } });
  assert.equal(fresh.code, 0, fresh.stderr);

  // The other store converts and quantizes beta alone first, so the shared steps are cached under beta.
  const usedEnv = { ...env, BAKE_STORE: join(root, 'store-used') };
  const first = await bake(['-C', root, 'quantize', 'two', '--model', 'beta'], { cwd: root, env: usedEnv });
  assert.equal(first.code, 0, first.stderr);
  const used = await bake(['-C', root, '--json', 'build', 'two', '--output', `oci:${join(root, 'out-used')}`], { cwd: root, env: usedEnv });
  assert.equal(used.code, 0, used.stderr);
  assert.match(used.stderr, /"step":"convert","model":"alpha","status":"cached"/, 'alpha reuses the conversion beta ran');

  const a = JSON.parse(fresh.stdout).images[0].manifestDigest as string;
  const b = JSON.parse(used.stdout).images[0].manifestDigest as string;
  assert.equal(a, b);
  const files = await imageFiles(join(root, 'out-used'), b);
  assert.deepEqual([...files.keys()].filter((k) => k.endsWith('.gguf')).sort(), ['app/models/alpha/alpha-Q8_0.gguf', 'app/models/beta/beta-Q8_0.gguf']);
  const manifest = JSON.parse(files.get('app/models/alpha/manifest.json')!.toString('utf8')) as { files: { path: string }[] };
  assert.deepEqual(manifest.files.map((f) => f.path), ['alpha-Q8_0.gguf']);
  const plan = await bake(['-C', root, '--json', 'plan', 'two'], { cwd: root, env: usedEnv });
  const steps = JSON.parse(plan.stdout).steps as { model: string; step: string; action: string }[];
  assert.deepEqual(steps.filter((s) => s.step === 'convert').map((s) => [s.model, s.action]), [['alpha', 'cached'], ['beta', 'cached']]);
});

test('the converted GGUF is named after the model folder (as convert_hf_to_gguf.py names it), not bake\'s scratch folder', { timeout: 600_000 }, async () => {
  const { root, env } = await project('named', 'Tiny-Story-Llama-v0.1', ['alpha']);
  const r = await bake(['-C', root, '--json', 'build', 'two', '--output', `oci:${join(root, 'out')}`], { cwd: root, env });
  assert.equal(r.code, 0, r.stderr);
  const files = await imageFiles(join(root, 'out'), JSON.parse(r.stdout).images[0].manifestDigest);
  const path = join(root, 'alpha.gguf');
  await writeFile(path, files.get('app/models/alpha/alpha-Q8_0.gguf')!);
  assert.equal(kvValue(await readGguf(path), 'general.name'), 'Tiny Story Llama v0.1');
});

test('a checkpoint missing a tensor stops the build with exit 2 naming the model, its file and the tensor; nothing is cached or written', { timeout: 600_000 }, async () => {
  const { root, env } = await project('missing', 'tiny', ['alpha'], (ts) => ts.filter((t) => t.name !== 'model.layers.1.mlp.up_proj.weight'));
  const out = join(root, 'out');
  const r = await bake(['-C', root, 'build', 'two', '--output', `oci:${out}`], { cwd: root, env });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /model alpha/);
  assert.match(r.stderr, /model\.safetensors/);
  assert.match(r.stderr, /missing[^\n]*model\.layers\.1\.mlp\.up_proj\.weight/);
  assert.doesNotMatch(r.stderr, /\/tmp\/convert-/, 'no scratch path in the message');
  await assert.rejects(readFile(join(out, 'index.json')), /ENOENT/);
  const steps = await readdir(join(env.BAKE_STORE!, 'steps')).catch(() => [] as string[]);
  const ran = await Promise.all(steps.map(async (s) => (JSON.parse(await readFile(join(env.BAKE_STORE!, 'steps', s), 'utf8')) as { step: string }).step));
  assert.deepEqual(ran, ['fetch']);
});

test('a verify report shared by two models names the model it is shown for', { timeout: 600_000 }, async () => {
  const { root, env } = await project('verified', 'tiny', ['alpha', 'beta'], undefined, '{ max_kld: 10 }');
  const first = await bake(['-C', root, 'verify', 'two', '--model', 'beta'], { cwd: root, env });
  assert.equal(first.code, 0, first.stderr);
  const r = await bake(['-C', root, '--json', 'verify', 'two'], { cwd: root, env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /"step":"verify","model":"alpha","status":"cached"/, 'alpha reuses the report beta made');
  const reports = JSON.parse(r.stdout).reports as { model: string }[];
  assert.deepEqual(reports.map((x) => x.model).sort(), ['alpha', 'beta']);
});
