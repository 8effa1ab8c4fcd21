import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, open, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { Store, listTree, stepKey } from '../../src/store/store.js';
import { runStep } from '../../src/pipeline/step.js';
import { InputError, IntegrityError } from '../../src/util/errors.js';
import { sha256Bytes } from '../../src/util/digest.js';

test('a step whose key is present is skipped; a changed parameter runs again', async () => {
  const store = new Store(await mkdtemp(join(tmpdir(), 'bake-store-')));
  let runs = 0;
  const produce = async (scratch: string) => {
    runs++;
    await writeFile(join(scratch, 'out.txt'), 'hello');
    return store.putTree(scratch, 'test');
  };
  const step = (over: Partial<{ version: number; params: unknown; tools: Record<string, string> }> = {}) => {
    const k = { step: 'quantize' as const, version: 1, inputs: ['a'.repeat(64)], params: { bits: 8 }, tools: { onnxruntime: '1.0' }, ...over };
    return { key: stepKey(k), name: k.step, version: k.version, inputs: k.inputs, params: k.params };
  };
  const first = await runStep(store, step(), () => {}, produce);
  const second = await runStep(store, step(), () => {}, produce);
  assert.equal(runs, 1);
  assert.equal(second.cached, true);
  assert.equal(second.digest, first.digest);
  await runStep(store, step({ params: { bits: 4 } }), () => {}, produce);
  assert.equal(runs, 2);
  await runStep(store, step({ version: 2 }), () => {}, produce);
  assert.equal(runs, 3);
  await runStep(store, step({ tools: { onnxruntime: '1.1' } }), () => {}, produce);
  assert.equal(runs, 4, 'a new tool version is a new key');
  const k = (params: unknown) => stepKey({ step: 'a', version: 1, inputs: [], params });
  assert.notEqual(k({ x: 1, y: 2 }), k({ x: 1, y: 3 }));
  assert.equal(k({ x: 1, y: 2 }), k({ y: 2, x: 1 }));
});

test('putFile refuses content that does not match the expected digest and stores nothing', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bake-store-'));
  const store = new Store(root);
  const src = join(root, 'f');
  await writeFile(src, 'abc');
  await assert.rejects(store.putFile(src, sha256Bytes('abd')), IntegrityError);
  assert.equal(await store.hasBlob(sha256Bytes('abc')), false);
  const ok = await store.putFile(src, sha256Bytes('abc'));
  assert.equal(ok.sha256, sha256Bytes('abc'));
  const out = join(root, 'm');
  const { digest } = await store.putArtifact({ kind: 'k', files: [{ path: 'a/b.txt', ...ok }], meta: {} });
  await store.materialize(digest, out);
  assert.equal(await readFile(join(out, 'a', 'b.txt'), 'utf8'), 'abc');
});

test('putFile checks the expected size as well as the sha256, from a path or an open file, and stores nothing on a mismatch', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bake-store-'));
  const store = new Store(root);
  const src = join(root, 'f');
  await writeFile(src, 'abc');
  const sha256 = sha256Bytes('abc');
  for (const size of [2, 4]) {
    await assert.rejects(store.putFile(src, { sha256, size, name: 'model m: f' }), (e: IntegrityError) => {
      assert.ok(e instanceof IntegrityError);
      assert.equal(e.exit, 'integrity');
      assert.match(e.message, new RegExp(`model m: f: expected ${size} bytes, got 3 bytes`));
      return true;
    });
    const fh = await open(src);
    await assert.rejects(store.putFile(fh, { sha256, size }), IntegrityError);
    await fh.close();
  }
  assert.equal(await store.hasBlob(sha256), false);
  const fh = await open(src);
  assert.deepEqual(await store.putFile(fh, { sha256, size: 3 }), { sha256, size: 3 });
  assert.deepEqual(await store.putFile(fh, { sha256, size: 3 }), { sha256, size: 3 }, 'an open file is read from its start each time');
  await fh.close();
});

test('listTree follows links to files inside the folder and refuses links that leave it, naming the link', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bake-store-'));
  const dir = join(root, 'm');
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'a.json'), '{}');
  await writeFile(join(root, 'secret.txt'), 'x');
  await symlink('../a.json', join(dir, 'sub', 'alias.json'));
  assert.deepEqual(await listTree(dir), ['a.json', 'sub/alias.json']);
  await symlink('../secret.txt', join(dir, 'weights.onnx_data'));
  await assert.rejects(listTree(dir), (e: InputError) => e instanceof InputError && e.message.includes(join(dir, 'weights.onnx_data')) && /outside/.test(e.message));
  // A link the selection leaves out is not read, so it does not matter.
  assert.deepEqual(await listTree(dir, (p) => p.endsWith('.json')), ['a.json', 'sub/alias.json']);
  await symlink('/etc', join(dir, 'etc'));
  await assert.rejects(listTree(dir, (p) => p === 'etc'), /etc is a symbolic link to \/etc, outside/);
});

test('a step failing on a scratch copy of a named artifact reports the model and the user\'s file, once', async () => {
  const store = new Store(await mkdtemp(join(tmpdir(), 'bake-store-')));
  const put = await store.putBytes('not onnx');
  const { digest, artifact } = await store.putArtifact({ kind: 'source', files: [{ path: 'onnx/model.onnx', ...put }], meta: {} });
  store.nameArtifact(digest, artifact, 'org/e5', 'e5');
  let seen = '';
  const run = (read: (dir: string) => string) =>
    runStep(store, { key: stepKey({ step: 'quantize', version: 1, inputs: [digest], params: {} }), name: 'quantize', version: 1, inputs: [digest], params: {}, model: 'e5' }, () => {}, async (scratch) => {
      const src = join(scratch, 'src');
      await store.materialize(digest, src);
      seen = read(src);
      throw new InputError(`${seen} is not a valid ONNX model: index out of range`, { file: seen, hint: `re-export ${seen}` });
    });
  await assert.rejects(run((src) => join(src, 'onnx', 'model.onnx')), (e: InputError) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.message, 'model e5: org/e5/onnx/model.onnx is not a valid ONNX model: index out of range');
    assert.equal(e.file, 'org/e5/onnx/model.onnx');
    assert.equal(e.hint, 're-export org/e5/onnx/model.onnx');
    return true;
  });
  assert.match(seen, /tmp\/quantize-/, 'the reader did see a scratch path');
  // A reader given the blob itself is mapped the same way; other paths are left alone.
  await assert.rejects(run(() => store.blobPath(put.sha256)), (e: InputError) => e.message === 'model e5: org/e5/onnx/model.onnx is not a valid ONNX model: index out of range');
  await assert.rejects(run(() => '/elsewhere/x.onnx'), (e: InputError) => e.message === 'model e5: /elsewhere/x.onnx is not a valid ONNX model: index out of range');
  // Another model fetching the same bytes from its own folder: each model's errors name its own files.
  store.nameArtifact(digest, artifact, '/home/me/models/e5-copy', 'copy');
  store.nameArtifact(digest, artifact, 'org/e5', 'e5');
  await assert.rejects(run((src) => join(src, 'onnx', 'model.onnx')), (e: InputError) => e.message.startsWith('model e5: org/e5/onnx/model.onnx'));
});

test('two processes writing the same blobs and steps into one store leave it consistent', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bake-store-'));
  const src = join(root, 'src');
  await mkdir(src);
  for (let i = 0; i < 20; i++) await writeFile(join(src, `f${i}`), Buffer.alloc(200_000 + i, i));
  const worker = join(root, 'worker.mts');
  await writeFile(
    worker,
    `import { Store } from ${JSON.stringify(new URL('../../src/store/store.ts', import.meta.url).pathname)};
     const s = new Store(process.argv[2]);
     for (let k = 0; k < 5; k++) { const r = await s.putTree(process.argv[3], 'tree'); await s.putStep({ key: 'f'.repeat(64), step: 'x', version: 1, inputs: [], params: {}, artifact: r.digest }); }
     process.send?.('done');`,
  );
  const run = () =>
    new Promise<void>((res, rej) => {
      const p = fork(worker, [join(root, 'store'), src], { execArgv: ['--import', 'tsx'] });
      p.on('exit', (code) => (code === 0 ? res() : rej(new Error(`worker exit ${code}`))));
    });
  await Promise.all([run(), run()]);
  const store = new Store(join(root, 'store'));
  const rec = await store.getStep('f'.repeat(64));
  assert.ok(rec, 'step record readable');
  const art = await store.getArtifact(rec.artifact);
  assert.equal(art!.files.length, 20);
  for (const f of art!.files) assert.equal(sha256Bytes(await readFile(store.blobPath(f.sha256))), f.sha256);
  assert.deepEqual(await readdir(join(root, 'store', 'tmp')), []);
});

test('resolvePrefix finds the one artifact or step a prefix of >= 12 hex names, and lists the candidates when several', async () => {
  const store = new Store(await mkdtemp(join(tmpdir(), 'bake-store-')));
  const { sha256, size } = await store.putBytes('weights');
  const { digest } = await store.putArtifact({ kind: 'model', files: [{ path: 'w.bin', sha256, size }], meta: {} });
  const key = stepKey('quantize', 1, [digest], {});
  await store.putStep({ key, step: 'quantize', version: 1, inputs: [digest], params: {}, artifact: digest });
  assert.deepEqual(await store.resolvePrefix(digest.slice(0, 12)), { kind: 'artifact', digest });
  assert.deepEqual(await store.resolvePrefix(`sha256:${digest.slice(0, 20).toUpperCase()}`), { kind: 'artifact', digest });
  assert.deepEqual(await store.resolvePrefix(digest), { kind: 'artifact', digest });
  assert.deepEqual(await store.resolvePrefix(key.slice(0, 12)), { kind: 'step', digest: key });
  // A second artifact sharing the first 12 hex.
  const twin = digest.slice(0, 12) + (digest[12] === '0' ? '1' : '0') + digest.slice(13);
  await writeFile(join(store.root, 'artifacts', `${twin}.json`), '{}');
  await assert.rejects(store.resolvePrefix(digest.slice(0, 12)), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /ambiguous/);
    assert.match(e.expected!, new RegExp(`artifact ${digest}`));
    assert.match(e.expected!, new RegExp(`artifact ${twin}`));
    return true;
  });
  assert.deepEqual(await store.resolvePrefix(digest.slice(0, 13)), { kind: 'artifact', digest });
  await assert.rejects(store.resolvePrefix(digest.slice(0, 11)), (e: unknown) => e instanceof InputError && /not a digest prefix/.test(e.message));
  await assert.rejects(store.resolvePrefix('f'.repeat(12)), (e: unknown) => e instanceof InputError && /no artifact or step/.test(e.message));
});

test('a step\'s outputs are linked into the store, not copied; a user\'s file is copied and left as it was', async () => {
  const store = new Store(await mkdtemp(join(tmpdir(), 'bake-store-')));
  const data = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
  let inodes: [number, number] | undefined;
  await runStep(store, { key: 'b'.repeat(64), name: 'quantize', version: 1, inputs: [], params: {} }, () => {}, async (scratch) => {
    await writeFile(join(scratch, 'out.bin'), data);
    const stored = await store.putTree(scratch, 'test');
    inodes = [(await stat(join(scratch, 'out.bin'))).ino, (await stat(store.blobPath(sha256Bytes(data)))).ino];
    return stored;
  });
  assert.equal(inodes![0], inodes![1], 'the output file itself became the blob');
  const blob = await stat(store.blobPath(sha256Bytes(data)));
  assert.equal(blob.nlink, 1, 'the scratch name is gone, the blob stays');
  assert.equal(blob.mode & 0o777, 0o444);

  const userDir = await mkdtemp(join(tmpdir(), 'bake-user-'));
  const mine = join(userDir, 'weights.bin');
  const other = Buffer.alloc(1024 * 1024 + 3, 9);
  await writeFile(mine, other, { mode: 0o640 });
  const put = await store.putFile(mine, sha256Bytes(other));
  assert.deepEqual(put, { sha256: sha256Bytes(other), size: other.length });
  assert.notEqual((await stat(mine)).ino, (await stat(store.blobPath(put.sha256))).ino, 'a user\'s file is not linked');
  assert.equal((await stat(mine)).mode & 0o777, 0o640, 'nor made read-only');
  assert.ok((await readFile(store.blobPath(put.sha256))).equals(other));
});
