// Which model files can run code when loaded: decided from their bytes and from what references them
// (src/lock/pickle.ts), for local folders here and for Hub repos in test/hub/resolve.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import { findUnsafeFiles, type FileReader } from '../../src/lock/pickle.js';
import { lockRecipe } from '../../src/lock/lock.js';
import { emptyLockfile } from '../../src/lock/lockfile.js';
import { hubConfigFromEnv } from '../../src/hub/config.js';
import { parseRecipe } from '../../src/recipe/load.js';
import { InputError } from '../../src/util/errors.js';
import { BZ2, LZMA_ALONE, PICKLE2, PICKLE4, XZ, onnxWithBinData, storedZip } from '../support/pickle-fixtures.js';

function memoryReader(files: Record<string, Uint8Array>): FileReader {
  return {
    read: async (path, offset, length) => files[path]!.subarray(offset, offset + length),
    readWhole: async (path) => files[path]!,
  };
}

async function unsafeOf(files: Record<string, Uint8Array>): Promise<Record<string, string>> {
  const list = Object.entries(files).map(([path, b]) => ({ path, size: b.length }));
  return Object.fromEntries((await findUnsafeFiles(list, memoryReader(files))).map((u) => [u.path, u.reason]));
}

/** A safetensors file whose header is `len` bytes (padded JSON). */
function safetensors(len: number): Buffer {
  const json = Buffer.from(JSON.stringify({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }).padEnd(len, ' '));
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([n, json, Buffer.alloc(8)]);
}

test('pickles are found by their bytes whatever their name: .joblib, .pth.tar, compressed, PyTorch ZIPs, object arrays', async () => {
  const reasons = await unsafeOf({
    'model.joblib': PICKLE4,
    'classifier.sav.data': PICKLE2,
    'weights.pth.tar': storedZip([['archive/data.pkl', PICKLE2], ['archive/data/0', new Uint8Array(16)]]),
    'late.model': storedZip([['archive/version', Buffer.from('3\n')], ['archive/data/0', new Uint8Array(16)], ['archive/data.pkl', PICKLE2]]),
    'gz.joblib.data': gzipSync(PICKLE4),
    'zlib.data': deflateSync(PICKLE4),
    'lzma.data': LZMA_ALONE,
    'xz.data': XZ,
    'bz2.data': BZ2,
    'objects.npy': Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), Buffer.from([0x46, 0x00]), Buffer.from("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }".padEnd(70, ' ') + '\n')]),
  });
  assert.match(reasons['model.joblib']!, /Python pickle \(protocol 4\)/);
  assert.match(reasons['classifier.sav.data']!, /Python pickle \(protocol 2\)/);
  assert.match(reasons['weights.pth.tar']!, /ZIP archive holding a pickle \(archive\/data\.pkl\)/);
  assert.match(reasons['late.model']!, /ZIP archive holding a pickle \(archive\/data\.pkl\)/, 'found through the central directory too');
  assert.match(reasons['gz.joblib.data']!, /gzip-compressed/);
  assert.match(reasons['zlib.data']!, /zlib-compressed/);
  assert.match(reasons['lzma.data']!, /lzma-compressed/);
  assert.match(reasons['xz.data']!, /xz-compressed/);
  assert.match(reasons['bz2.data']!, /bzip2-compressed/);
  assert.match(reasons['objects.npy']!, /NumPy array of Python objects/);
});

test('files that only look alike are accepted: safetensors with a 640-byte header, text, ZIPs without pickles', async () => {
  const st = safetensors(640);
  assert.deepEqual([st[0], st[1]], [0x80, 0x02], 'the header length starts like a pickle');
  const reasons = await unsafeOf({
    'model.safetensors': st,
    'vocab.txt': Buffer.from('x^2\n[PAD]\n[UNK]\n'),
    'notes.md': Buffer.from('xx'),
    'arrays.npz': storedZip([['a.npy', new Uint8Array(8)]]),
    'config.json': Buffer.from('{}'),
    'empty.txt': new Uint8Array(0),
  });
  assert.deepEqual(reasons, {});
});

const hub = hubConfigFromEnv({ HF_HUB_OFFLINE: '1', HF_HOME: '/nonexistent' });

async function localProject(files: Record<string, Uint8Array | string>, allow: string[] = []): Promise<{ lock: () => ReturnType<typeof lockRecipe> }> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-pickle-'));
  await mkdir(join(dir, 'recipes'));
  await mkdir(join(dir, 'models', 'm1'), { recursive: true });
  for (const [name, data] of Object.entries(files)) {
    await mkdir(join(dir, 'models', 'm1', name, '..'), { recursive: true });
    await writeFile(join(dir, 'models', 'm1', name), data);
  }
  const recipe = await parseRecipe(
    `image: { name: x/y }\nmodels:\n  - id: m1\n    path: ../models/m1\n    files: ["**"]\n    allow_pickle: ${JSON.stringify(allow)}\n    quantize: { format: none }\ntargets: { cpu: { base: scratch } }\n`,
    join(dir, 'recipes', 'r.yaml'),
  );
  return { lock: () => lockRecipe(recipe, emptyLockfile(), hub, { root: dir }) };
}

test('local folders: a renamed pickle is refused by its bytes, naming file and reason; allow_pickle still accepts it', async () => {
  for (const [name, data, reason] of [
    ['model.joblib', PICKLE4, /Python pickle/],
    ['checkpoint.pth.tar', storedZip([['archive/data.pkl', PICKLE2]]), /ZIP archive holding a pickle/],
    ['sub/encoder.data', gzipSync(PICKLE4), /gzip-compressed/],
  ] as const) {
    const p = await localProject({ 'config.json': '{}', [name]: data });
    await assert.rejects(p.lock(), (e: InputError) => {
      assert.ok(e instanceof InputError, String(e));
      assert.equal(e.field, 'models.m1.allow_pickle');
      assert.ok(e.message.includes(`model m1: ${name} in `), e.message);
      assert.match(e.message, reason);
      return true;
    }, name);
    const allowed = await localProject({ 'config.json': '{}', [name]: data }, [name]);
    assert.ok((await allowed.lock()).lock.models['r/m1']!.files.some((f) => f.path === name));
  }
});

test('local folders: an ONNX external-data file named *.bin is accepted; a *.bin nothing references is refused', async () => {
  const { onnx, data } = await onnxWithBinData();
  const ok = await localProject({ 'onnx/model.onnx': onnx, 'onnx/model.bin': data });
  assert.deepEqual((await ok.lock()).lock.models['r/m1']!.files.map((f) => f.path), ['onnx/model.bin', 'onnx/model.onnx']);
  // The same bytes beside a model that does not reference them: a name pickle loaders open, refused.
  const stray = await localProject({ 'onnx/model.onnx': onnx, 'onnx/model.bin': data, 'pytorch_model.bin': data });
  await assert.rejects(stray.lock(), (e: InputError) => /pytorch_model\.bin .*pickle loaders/.test(e.message) && e.field === 'models.m1.allow_pickle');
});
