// Local model folders (`path:` in a recipe) as a new user meets them through the CLI: links that leave
// the folder, lock entries edited by hand, files that changed or vanished since `bake lock`, corrupt
// model files. Each case checks the exit code, what the message names, and that nothing was stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bake, sharedModels } from '../support/cli.js';

const ONNX = join(sharedModels(), 'silero-vad', 'silero_vad_16k_op15.onnx');

interface Project {
  dir: string;
  store: string;
  run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  lock(): Promise<LockJson>;
  writeLock(lock: LockJson): Promise<void>;
  storedBlobs(): Promise<string[]>;
}
interface LockJson {
  version: 1;
  models: Record<string, { files: { path: string; size: number; sha256: string; lfs: boolean }[] } & Record<string, unknown>>;
}

async function project(t: { after: (fn: () => Promise<void>) => void }, quantize = '{ format: none }'): Promise<Project> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-local-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'recipes'));
  await mkdir(join(dir, 'models', 'm1'), { recursive: true });
  await mkdir(join(dir, 'victim'));
  await writeFile(join(dir, 'victim', 'secret.txt'), 'the secret of the host\n');
  await copyFile(ONNX, join(dir, 'models', 'm1', 'model.onnx'));
  await writeFile(join(dir, 'models', 'm1', 'config.json'), '{"model_type":"vad"}\n');
  await writeFile(join(dir, 'recipes', 'r.yaml'), `image: { name: x/y }\nmodels:\n  - id: m1\n    path: ../models/m1\n    quantize: ${quantize}\ntargets: { cpu: { base: scratch } }\n`);
  const store = join(dir, 'store');
  const p: Project = {
    dir,
    store,
    run: (args) => bake(['-C', dir, ...args], { cwd: dir, env: { BAKE_STORE: store, HF_HUB_OFFLINE: '1' } }),
    lock: async () => JSON.parse(await readFile(join(dir, 'models.lock'), 'utf8')) as LockJson,
    writeLock: (lock) => writeFile(join(dir, 'models.lock'), JSON.stringify(lock, null, 2) + '\n'),
    storedBlobs: () => readdir(join(store, 'blobs', 'sha256')).catch(() => []),
  };
  const locked = await p.run(['lock', 'r']);
  assert.equal(locked.code, 0, locked.stderr);
  return p;
}

const sha256 = (b: string | Uint8Array) => createHash('sha256').update(b).digest('hex');
const SECRET = 'the secret of the host\n';

test('a link leaving the model folder is refused by lock and by quantize, naming the link (exit 2)', async (t) => {
  const p = await project(t);
  await symlink(join(p.dir, 'victim', 'secret.txt'), join(p.dir, 'models', 'm1', 'weights.onnx_data'));
  const lock = await p.run(['lock', 'r', '--update', 'm1']);
  assert.equal(lock.code, 2, lock.stderr);
  assert.match(lock.stderr, /model m1: .*weights\.onnx_data is a symbolic link to .*secret\.txt, outside/);

  // A lock written before the check (or by hand) that lists the link is refused when the files are fetched.
  const entry = (await p.lock()).models['r/m1']!;
  entry.files.push({ path: 'weights.onnx_data', size: SECRET.length, sha256: sha256(SECRET), lfs: false });
  await p.writeLock({ version: 1, models: { 'r/m1': entry } });
  const q = await p.run(['quantize', 'r']);
  assert.equal(q.code, 2, q.stderr);
  assert.match(q.stderr, /model m1: .*weights\.onnx_data is a symbolic link to .*secret\.txt, outside/);
  assert.ok(!(await p.storedBlobs()).includes(sha256(SECRET)), 'the link target must not enter the store');
});

test('a link that stays inside the model folder is followed', async (t) => {
  const p = await project(t);
  await mkdir(join(p.dir, 'models', 'm1', 'sub'));
  await symlink('../config.json', join(p.dir, 'models', 'm1', 'sub', 'alias.json'));
  const lock = await p.run(['lock', 'r', '--update', 'm1']);
  assert.equal(lock.code, 0, lock.stderr);
  const files = (await p.lock()).models['r/m1']!.files;
  const alias = files.find((f) => f.path === 'sub/alias.json')!;
  assert.equal(alias.sha256, sha256('{"model_type":"vad"}\n'));
  const q = await p.run(['quantize', 'r']);
  assert.equal(q.code, 0, q.stderr);
});

test('a models.lock path that leaves the model folder is refused (exit 2) and nothing is copied', async (t) => {
  const p = await project(t);
  const entry = (await p.lock()).models['r/m1']!;
  for (const bad of ['../victim/secret.txt', '../../victim/secret.txt', `${p.dir}/victim/secret.txt`]) {
    await p.writeLock({ version: 1, models: { 'r/m1': { ...entry, files: [...entry.files, { path: bad, size: SECRET.length, sha256: sha256(SECRET), lfs: false }] } } });
    const q = await p.run(['quantize', 'r']);
    assert.equal(q.code, 2, `${bad}: ${q.stderr}`);
    assert.ok(q.stderr.includes(`r/m1`) && q.stderr.includes(bad), q.stderr);
    assert.match(q.stderr, /bake lock r --update m1/);
  }
  assert.ok(!(await p.storedBlobs()).includes(sha256(SECRET)), 'a host file must not enter the store');
});

test('a locked file missing from the folder: exit 2 naming the model, the lock entry and the file, with the fix', async (t) => {
  const p = await project(t);
  await rm(join(p.dir, 'models', 'm1', 'config.json'));
  const q = await p.run(['quantize', 'r']);
  assert.equal(q.code, 2, q.stderr);
  assert.match(q.stderr, /model m1/);
  assert.match(q.stderr, /r\/m1/);
  assert.ok(q.stderr.includes(join(p.dir, 'models', 'm1', 'config.json')), q.stderr);
  assert.match(q.stderr, /bake lock r --update m1/);
  assert.doesNotMatch(q.stderr, /ENOENT/);
});

test('a lock size that does not match the file is an integrity failure (exit 3), sha256 unchanged', async (t) => {
  const p = await project(t);
  const lock = await p.lock();
  const cfg = lock.models['r/m1']!.files.find((f) => f.path === 'config.json')!;
  cfg.size += 1;
  await p.writeLock(lock);
  const q = await p.run(['quantize', 'r']);
  assert.equal(q.code, 3, q.stderr);
  assert.match(q.stderr, /config\.json/);
  assert.match(q.stderr, new RegExp(`${cfg.size} bytes`));
});
test('a corrupt model file is named by model id and the user\'s path, once, not by bake\'s temporary copy', async (t) => {
  const p = await project(t, '{ format: onnx-fp16 }');
  const file = join(p.dir, 'models', 'm1', 'model.onnx');
  await writeFile(file, (await readFile(ONNX)).subarray(0, 5000));
  const relock = await p.run(['lock', 'r', '--update', 'm1']);
  assert.equal(relock.code, 0, relock.stderr);
  const q = await p.run(['quantize', 'r']);
  assert.equal(q.code, 2, q.stderr);
  const line = q.stderr.split('\n').find((l) => l.startsWith('error: '))!;
  assert.match(line, /^error: model m1: /);
  assert.equal(line.split(file).length - 1, 1, line);
  assert.ok(!q.stderr.includes(p.store) && !/quantize-/.test(q.stderr), q.stderr);
});
