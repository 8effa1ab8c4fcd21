// The runtime module the images run: finds /app/models/<id>, checks files against the manifest, and for
// images built without model bytes, see unbundled.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Bytes } from '../../src/util/digest.js';
import { InputError, IntegrityError } from '../../src/util/errors.js';
import { prettyJson } from '../../src/util/json.js';
import { loadModels, parseManifest, type ModelManifest } from '../../src/runtime/index.js';
import { VAD_ONNX } from '../support/docker-env.js';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-runtime-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A model folder as bake's package step writes it: files + manifest.json with their digests. */
async function writeModel(root: string, id: string, files: Record<string, Uint8Array>, extra: Partial<ModelManifest> = {}): Promise<ModelManifest> {
  const dir = join(root, id);
  await mkdir(dir, { recursive: true });
  const list = [];
  for (const [path, data] of Object.entries(files)) {
    await writeFile(join(dir, path), data);
    list.push({ path, sha256: sha256Bytes(data), size: data.length });
  }
  const manifest = {
    schema: 'bake.model.v1',
    id,
    source: { type: 'path', repo: `../models/${id}`, revision: 'local', commit: 'c'.repeat(64), files: list.map((f) => ({ ...f, lfs: false })) },
    files: list,
    quantization: { format: 'none', params: { format: 'none' } },
    verification: { skipped: true },
    ...extra,
  } as ModelManifest;
  await writeFile(join(dir, 'manifest.json'), prettyJson(manifest));
  return manifest;
}

test('bundled models: every file checked against its manifest, one "pre-quantized <id> loaded in <ms> ms" line each', async (t) => {
  const root = await tempDir(t);
  const onnx = await readFile(VAD_ONNX);
  await writeModel(root, 'vad', { 'silero_vad_16k_op15.onnx': onnx, 'README.md': Buffer.from('vad\n') });
  await writeModel(root, 'tiny', { 'w.gguf': Buffer.from('GGUF....') });
  const lines: string[] = [];
  const loaded = await loadModels({ root, log: (l) => lines.push(l) });
  assert.deepEqual(loaded.map((m) => [m.id, m.dir, m.fetched]), [['tiny', join(root, 'tiny'), false], ['vad', join(root, 'vad'), false]]);
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^pre-quantized tiny loaded in \d+ ms$/);
  assert.match(lines[1]!, /^pre-quantized vad loaded in \d+ ms$/);
  assert.ok(loaded.every((m) => Number.isInteger(m.ms) && m.ms >= 0));
  // ids select and order; BAKE_MODELS_DIR is the default root.
  const only = await loadModels({ ids: ['vad'], env: { BAKE_MODELS_DIR: root } });
  assert.deepEqual(only.map((m) => m.id), ['vad']);
});

test('a flipped byte, a truncated file and a missing file are integrity errors naming the file', async (t) => {
  const root = await tempDir(t);
  const onnx = await readFile(VAD_ONNX);
  await writeModel(root, 'vad', { 'silero_vad_16k_op15.onnx': onnx });
  const file = join(root, 'vad', 'silero_vad_16k_op15.onnx');
  const flipped = Buffer.from(onnx);
  flipped[flipped.length >> 1]! ^= 0xff;
  await writeFile(file, flipped);
  await assert.rejects(loadModels({ root }), (e: unknown) => e instanceof IntegrityError && e.path === file && /sha256 /.test(e.expectedDigest));
  // The size-only check does not see a flipped byte, but it does see a truncated file.
  await loadModels({ root, check: 'size' });
  await writeFile(file, onnx.subarray(0, 1000));
  await assert.rejects(loadModels({ root, check: 'size' }), (e: unknown) => e instanceof IntegrityError && /1289603 bytes/.test(e.expectedDigest) && /1000 bytes/.test(e.actualDigest));
  await rm(file);
  await assert.rejects(loadModels({ root }), (e: unknown) => e instanceof IntegrityError && e.actualDigest === 'no file' && /incomplete/.test(e.hint ?? ''));
});

test('hostile or broken manifests are input errors, never a path outside the model folder', async (t) => {
  const root = await tempDir(t);
  const good = { schema: 'bake.model.v1', id: 'm', source: { type: 'hub', repo: 'a/b', commit: 'a'.repeat(40), files: [] }, files: [{ path: 'w.bin', sha256: 'a'.repeat(64), size: 1 }], quantization: { format: 'none' } };
  const cases: [string, unknown, RegExp][] = [
    ['escape', { ...good, files: [{ path: '../../etc/passwd', sha256: 'a'.repeat(64), size: 1 }] }, /files\[0\]\.path/],
    ['absolute', { ...good, files: [{ path: '/etc/passwd', sha256: 'a'.repeat(64), size: 1 }] }, /files\[0\]\.path/],
    ['bad digest', { ...good, files: [{ path: 'w.bin', sha256: 'xyz', size: 1 }] }, /files\[0\]\.sha256/],
    ['negative size', { ...good, files: [{ path: 'w.bin', sha256: 'a'.repeat(64), size: -1 }] }, /files\[0\]\.size/],
    ['huge size', { ...good, files: [{ path: 'w.bin', sha256: 'a'.repeat(64), size: 2 ** 60 }] }, /files\[0\]\.size/],
    ['no files', { ...good, files: 'all' }, /: files is missing/],
    ['bad id', { ...good, id: '../x' }, /: id is missing/],
    ['array', [], /\(top level\)/],
    ['bundled string', { ...good, bundled: 'no' }, /bundled/],
  ];
  for (const [name, value, re] of cases) {
    assert.throws(() => parseManifest(JSON.stringify(value), 'manifest.json'), (e: unknown) => e instanceof InputError && re.test(e.message), name);
  }
  assert.throws(() => parseManifest('{"id": ', 'manifest.json'), (e: unknown) => e instanceof InputError && /not valid JSON/.test(e.message));
  // Too big to be a manifest: refused before reading it.
  await mkdir(join(root, 'big'));
  await writeFile(join(root, 'big', 'manifest.json'), '');
  await appendFile(join(root, 'big', 'manifest.json'), Buffer.alloc(9 << 20, 0x20));
  await assert.rejects(loadModels({ root, ids: ['big'] }), (e: unknown) => e instanceof InputError && /a manifest is at most/.test(e.message));
  // A folder whose manifest names another model; an id that is a path; nothing to load.
  await writeModel(root, 'other', { 'w.bin': Buffer.from('w') }, { id: 'someone-else' } as Partial<ModelManifest>);
  await assert.rejects(loadModels({ root, ids: ['other'] }), /describes model someone-else, not other/);
  await assert.rejects(loadModels({ root, ids: ['../other'] }), (e: unknown) => e instanceof InputError);
  const empty = await mkdtemp(join(tmpdir(), 'bake-runtime-empty-'));
  t.after(() => rm(empty, { recursive: true, force: true }));
  await assert.rejects(loadModels({ root: empty }), (e: unknown) => e instanceof InputError && /no models under/.test(e.message));
});
