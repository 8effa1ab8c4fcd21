// `bake lock` and `bake pull` end to end against the loopback Hub, as a user runs them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readFile, readlink, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHubServer, filesFromDir } from '../support/hub-server.js';
import { bake, sharedModels } from '../support/cli.js';

const modelDir = join(sharedModels(), 'stories260K', 'hf');

const hub = await startHubServer({
  repos: {
    'karpathy/stories260k': { files: await filesFromDir(modelDir) },
    'acme/private-model': { files: { 'config.json': '{}' }, private: true },
  },
});
after(() => hub.close());

async function project(recipe: string): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-hubcli-'));
  await mkdir(join(dir, 'recipes'));
  await writeFile(join(dir, 'recipes', 'tiny.yaml'), recipe);
  return { dir, env: { HF_ENDPOINT: hub.url, HF_HOME: join(dir, 'hf'), BAKE_STORE: join(dir, 'store'), HF_TOKEN: '' } };
}

const recipe = `image: { name: acme/tiny }
models:
  - id: stories
    repo: karpathy/stories260k
    files: ["*.json", "*.safetensors", "tokenizer.model"]
    quantize: { format: none }
targets: { cpu: { base: scratch } }
`;

test('bake lock twice gives identical bytes; bake pull fills the HF cache layout; offline works from it', async () => {
  const { dir, env } = await project(recipe);
  const r1 = await bake(['-C', dir, 'lock', 'tiny'], { cwd: dir, env });
  assert.equal(r1.code, 0, r1.stderr);
  const first = await readFile(join(dir, 'models.lock'), 'utf8');
  const r2 = await bake(['-C', dir, 'lock', 'tiny', '--update', 'stories'], { cwd: dir, env });
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(await readFile(join(dir, 'models.lock'), 'utf8'), first);
  const lock = JSON.parse(first);
  const entry = lock.models['tiny/stories'];
  assert.equal(entry.commit, hub.commitOf('karpathy/stories260k'));
  const st = entry.files.find((f: { path: string }) => f.path === 'model.safetensors');
  assert.equal(st.sha256, '54e3eb9fe3f0874894e5502fb799b0c38f92ae5a2dd336b541fd16184d02f47b');
  assert.equal(st.lfs, true);
  assert.equal(entry.files.find((f: { path: string }) => f.path === 'tokenizer.model').sha256, '872ca708aae12a2e8cf4c0e8a615e765ba0360aaf927f5818e5d60d431bc4be6');

  const pull = await bake(['-C', dir, '--json', 'pull', 'tiny'], { cwd: dir, env });
  assert.equal(pull.code, 0, pull.stderr);
  const repoDir = join(dir, 'hf', 'hub', 'models--karpathy--stories260k');
  assert.equal((await readFile(join(repoDir, 'refs', 'main'), 'utf8')).trim(), entry.commit);
  const link = await readlink(join(repoDir, 'snapshots', entry.commit, 'model.safetensors'));
  assert.match(link, /^\.\.\/\.\.\/blobs\/54e3eb9f/);

  // Offline, with a fresh store: everything comes from the HF cache.
  const offline = { ...env, HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9', BAKE_STORE: join(dir, 'store2') };
  const off = await bake(['-C', dir, 'pull', 'tiny'], { cwd: dir, env: offline });
  assert.equal(off.code, 0, off.stderr);
});

test('offline with a file missing from the cache fails clearly; a private repo says so', async () => {
  const { dir, env } = await project(recipe);
  assert.equal((await bake(['-C', dir, 'lock', 'tiny'], { cwd: dir, env })).code, 0);
  const off = await bake(['-C', dir, 'pull', 'tiny'], { cwd: dir, env: { ...env, HF_HUB_OFFLINE: '1' } });
  assert.notEqual(off.code, 0);
  assert.match(off.stderr, /offline/i);
  assert.match(off.stderr, /config\.json|model\.safetensors|tokenizer|generation_config|special_tokens_map/);

  const priv = await project(recipe.replace('karpathy/stories260k', 'acme/private-model').replace('["*.json", "*.safetensors", "tokenizer.model"]', '["*.json"]'));
  const r = await bake(['-C', priv.dir, 'lock', 'tiny'], { cwd: priv.dir, env: priv.env });
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /repo acme\/private-model does not exist, or it is private\/gated and needs a token: set HF_TOKEN/);

  const bad = await bake(['-C', priv.dir, 'lock', 'tiny'], { cwd: priv.dir, env: { ...priv.env, HF_TOKEN: 'hf_expiredOrRevoked0001' } });
  assert.equal(bad.code, 4, bad.stderr);
  assert.match(bad.stderr, /the Hub rejected HF_TOKEN \(invalid or expired\)/);
  assert.doesNotMatch(bad.stderr, /hf_expiredOrRevoked0001/);
});

test('bake lock rides out Hub API answers cut mid-body (model info and file tree)', async (t) => {
  const { dir, env } = await project(recipe);
  hub.faults.push({ kind: 'cut', on: 'api', endpoint: 'info', times: 1 }, { kind: 'cut', on: 'api', endpoint: 'tree', times: 1 });
  t.after(() => hub.faults.splice(0));
  const r = await bake(['-C', dir, 'lock', 'tiny'], { cwd: dir, env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(hub.faults.reduce((n, f) => n + (f.times ?? 0), 0), 0, 'both cuts happened');
  assert.equal(JSON.parse(await readFile(join(dir, 'models.lock'), 'utf8')).models['tiny/stories'].commit, hub.commitOf('karpathy/stories260k'));
});

test('bake pull with its fetch step cached in the store still leaves the HF cache complete (a deleted blob), or fails offline naming the file', async () => {
  const { dir, env } = await project(recipe);
  assert.equal((await bake(['-C', dir, 'lock', 'tiny'], { cwd: dir, env })).code, 0);
  assert.equal((await bake(['-C', dir, 'pull', 'tiny'], { cwd: dir, env })).code, 0);
  const weights = '54e3eb9fe3f0874894e5502fb799b0c38f92ae5a2dd336b541fd16184d02f47b';
  const repoDir = join(dir, 'hf', 'hub', 'models--karpathy--stories260k');
  const commit = hub.commitOf('karpathy/stories260k');
  await rm(join(repoDir, 'blobs', weights)); // the snapshot link now dangles

  const off = await bake(['-C', dir, 'pull', 'tiny'], { cwd: dir, env: { ...env, HF_HUB_OFFLINE: '1' } });
  assert.equal(off.code, 4, off.stderr);
  assert.match(off.stderr, /model\.safetensors of karpathy\/stories260k@[0-9a-f]{12} is missing from the Hugging Face cache/);
  assert.match(off.stderr, /unset HF_HUB_OFFLINE/);

  const on = await bake(['-C', dir, 'pull', 'tiny'], { cwd: dir, env });
  assert.equal(on.code, 0, on.stderr);
  const bytes = await readFile(join(repoDir, 'snapshots', commit, 'model.safetensors'));
  assert.equal(createHash('sha256').update(bytes).digest('hex'), weights);
});

test('a cached blob corrupted with size and mtime unchanged: bake pull --force downloads it again; an upstream that differs is exit 3 saying so', async (t) => {
  const { dir, env } = await project(recipe);
  assert.equal((await bake(['-C', dir, 'lock', 'tiny'], { cwd: dir, env })).code, 0);
  const weights = '54e3eb9fe3f0874894e5502fb799b0c38f92ae5a2dd336b541fd16184d02f47b';
  const blob = join(dir, 'hf', 'hub', 'models--karpathy--stories260k', 'blobs', weights);
  const T = 1_700_000_000;
  assert.equal((await bake(['-C', dir, 'pull', 'tiny'], { cwd: dir, env })).code, 0);
  await utimes(blob, T, T);
  assert.equal((await bake(['-C', dir, 'pull', 'tiny', '--force'], { cwd: dir, env })).code, 0); // re-hashed, stamped with mtime T
  const corrupt = async () => {
    const bytes = await readFile(blob);
    bytes[1000]! ^= 0xff;
    await writeFile(blob, bytes);
    await utimes(blob, T, T);
  };
  await corrupt();
  const again = await bake(['-C', dir, 'pull', 'tiny', '--force'], { cwd: dir, env });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(createHash('sha256').update(await readFile(blob)).digest('hex'), weights);

  await corrupt();
  hub.faults.push({ kind: 'flip', path: 'model.safetensors', flipAt: 5 });
  t.after(() => hub.faults.splice(0));
  const upstream = await bake(['-C', dir, 'pull', 'tiny', '--force'], { cwd: dir, env });
  assert.equal(upstream.code, 3, upstream.stderr);
  assert.match(upstream.stderr, /model\.safetensors/);
  assert.match(upstream.stderr, /the upstream file differs from the lock/);
});

test('a lock that disagrees with the recipe stops pull and says how to fix it', async () => {
  const { dir, env } = await project(recipe);
  assert.equal((await bake(['-C', dir, 'lock', 'tiny'], { cwd: dir, env })).code, 0);
  await writeFile(join(dir, 'recipes', 'tiny.yaml'), recipe.replace('"tokenizer.model"]', '"tokenizer.model", "README.md"]'));
  const r = await bake(['-C', dir, 'pull', 'tiny'], { cwd: dir, env });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /out of date for tiny\/stories/);
  assert.match(r.stderr, /bake lock tiny --update stories/);
});
