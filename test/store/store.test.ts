import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { Store, stepKey } from '../../src/store/store.js';
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
  const def = { step: 'quantize' as const, version: 1, inputs: ['a'.repeat(64)], params: { bits: 8 } };
  const first = await runStep(store, def, () => {}, produce);
  const second = await runStep(store, def, () => {}, produce);
  assert.equal(runs, 1);
  assert.equal(second.cached, true);
  assert.equal(second.digest, first.digest);
  await runStep(store, { ...def, params: { bits: 4 } }, () => {}, produce);
  assert.equal(runs, 2);
  await runStep(store, { ...def, version: 2 }, () => {}, produce);
  assert.equal(runs, 3);
  assert.notEqual(stepKey('a', 1, [], { x: 1, y: 2 }), stepKey('a', 1, [], { x: 1, y: 3 }));
  assert.equal(stepKey('a', 1, [], { x: 1, y: 2 }), stepKey('a', 1, [], { y: 2, x: 1 }));
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
