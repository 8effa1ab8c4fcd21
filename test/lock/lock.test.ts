import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRecipe } from '../../src/recipe/load.js';
import { lockRecipe } from '../../src/lock/lock.js';
import { emptyLockfile, frozenEntries, readLockfile, serializeLockfile, writeLockfile } from '../../src/lock/lockfile.js';
import { hubConfigFromEnv } from '../../src/hub/config.js';
import { InputError } from '../../src/util/errors.js';
import { sha256Bytes } from '../../src/util/digest.js';

async function project(): Promise<{ dir: string; recipeFile: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-lock-'));
  await mkdir(join(dir, 'recipes'), { recursive: true });
  await mkdir(join(dir, 'models', 'm1', 'sub'), { recursive: true });
  await writeFile(join(dir, 'models', 'm1', 'config.json'), '{"a":1}');
  await writeFile(join(dir, 'models', 'm1', 'sub', 'weights.onnx'), Buffer.alloc(1000, 7));
  await writeFile(join(dir, 'models', 'm1', 'notes.txt'), 'x');
  const recipeFile = join(dir, 'recipes', 'r.yaml');
  return { dir, recipeFile };
}

const recipeText = (files: string) => `image: { name: x/y }
models:
  - id: m1
    path: ../models/m1
    files: ${files}
    quantize: { format: none }
targets: { cpu: { base: scratch } }
`;

const hub = hubConfigFromEnv({ HF_HUB_OFFLINE: '1', HF_HOME: '/nonexistent' });

test('locking twice gives identical bytes; entries carry size and sha256', async () => {
  const { dir, recipeFile } = await project();
  const recipe = await parseRecipe(recipeText('["*.json", "**/*.onnx"]'), recipeFile);
  const a = await lockRecipe(recipe, emptyLockfile(), hub, { root: dir });
  const b = await lockRecipe(recipe, emptyLockfile(), hub, { root: dir });
  assert.equal(serializeLockfile(a.lock), serializeLockfile(b.lock));
  const entry = a.lock.models['r/m1']!;
  assert.deepEqual(entry.files.map((f) => f.path), ['config.json', 'sub/weights.onnx']);
  assert.equal(entry.files[1]!.size, 1000);
  assert.equal(entry.files[1]!.sha256, sha256Bytes(Buffer.alloc(1000, 7)));
  // Writing and reading back round-trips to the same bytes.
  const file = join(dir, 'models.lock');
  await writeLockfile(a.lock, file);
  const text = await readFile(file, 'utf8');
  assert.equal(serializeLockfile(await readLockfile(file)), text);
  assert.ok(text.endsWith('\n'));
  // A second lock of an unchanged recipe changes nothing.
  const again = await lockRecipe(recipe, a.lock, hub, { root: dir });
  assert.deepEqual(again.changes.map((c) => c.action), ['unchanged']);
});

test('frozen commands fail clearly when recipe and lock disagree', async () => {
  const { dir, recipeFile } = await project();
  const r1 = await parseRecipe(recipeText('["*.json"]'), recipeFile);
  const { lock } = await lockRecipe(r1, emptyLockfile(), hub, { root: dir });
  assert.equal(frozenEntries(r1, lock).size, 1);
  const r2 = await parseRecipe(recipeText('["*.json", "*.txt"]'), recipeFile);
  assert.throws(() => frozenEntries(r2, lock), (e: InputError) => /out of date for r\/m1/.test(e.message) && /bake lock r --update m1/.test(e.hint!));
  assert.throws(() => frozenEntries(r1, emptyLockfile()), (e: InputError) => /no entry for r\/m1/.test(e.message) && /bake lock r/.test(e.hint!));
});

test('pickle files are refused unless allowed by name', async () => {
  const { dir, recipeFile } = await project();
  await writeFile(join(dir, 'models', 'm1', 'pytorch_model.bin'), 'pickle');
  const r = await parseRecipe(recipeText('["*"]'), recipeFile);
  await assert.rejects(lockRecipe(r, emptyLockfile(), hub, { root: dir }), (e: InputError) => e.field === 'models.m1.allow_pickle' && /pytorch_model\.bin/.test(e.message));
  const ok = await parseRecipe(recipeText('["*"]').replace('    quantize', '    allow_pickle: [pytorch_model.bin]\n    quantize'), recipeFile);
  const { lock } = await lockRecipe(ok, emptyLockfile(), hub, { root: dir });
  assert.ok(lock.models['r/m1']!.files.some((f) => f.path === 'pytorch_model.bin'));
});

test('a malformed lock file is a clear error naming the field', async () => {
  const { dir } = await project();
  const file = join(dir, 'models.lock');
  await writeFile(file, '{"version":1,"models":{"r/m1":{"source":"hub","repo":"a/b","revision":"main","commit":"zz","fragment":"00","files":[]}}}');
  await assert.rejects(readLockfile(file), (e: InputError) => e.file === file && /commit/.test(e.message) && /bake lock/.test(e.hint!));
  await writeFile(file, '{"version":1,');
  await assert.rejects(readLockfile(file), (e: InputError) => /not valid JSON/.test(e.message));
});

test('a lock file path that could leave the model folder is refused when models.lock is read', async () => {
  const { dir } = await project();
  const file = join(dir, 'models.lock');
  const entry = (path: string) => ({
    version: 1,
    models: { 'r/m1': { source: 'path', repo: '../models/m1', revision: 'local', commit: 'a'.repeat(64), fragment: 'b'.repeat(64), files: [{ path, size: 3, sha256: 'c'.repeat(64), lfs: false }] } },
  });
  for (const bad of ['../victim/secret.txt', 'sub/../../x', '/etc/passwd', 'a//b', './a', 'a\\b', 'C:/x', 'a\u0000b']) {
    await writeFile(file, JSON.stringify(entry(bad)));
    await assert.rejects(readLockfile(file), (e: InputError) => {
      assert.ok(e instanceof InputError, String(e));
      assert.equal(e.exit, 'usage');
      assert.equal(e.field, 'models.r/m1.files');
      assert.ok(e.message.includes(JSON.stringify(bad)) && e.message.includes('r/m1'), e.message);
      assert.match(e.hint!, /bake lock r --update m1/);
      return true;
    }, bad);
  }
  await writeFile(file, JSON.stringify(entry('sub/weights.onnx')));
  assert.equal((await readLockfile(file)).models['r/m1']!.files[0]!.path, 'sub/weights.onnx');
});
