// safetensors writer: what it writes the strict reader reads back exactly, bytes are deterministic
// (declaration order does not matter), and bad declarations are refused before anything is written.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readSafetensorsHeader, readTensorRaw, writeSafetensors, bytesOf, SafetensorsWriteError, type TensorToWrite } from '../../src/formats/safetensors/index.js';

let dir: string;
before(async () => { dir = await mkdtemp(join(tmpdir(), 'bake-st-writer-')); });
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

const tensors = (): TensorToWrite[] => [
  { name: 'b.qweight', dtype: 'I32', shape: [2, 3], data: bytesOf(Int32Array.from([1, -2, 3, 0x7fffffff, -0x80000000, 6])) },
  { name: 'a.scales', dtype: 'F16', shape: [3], data: bytesOf(Uint16Array.from([0x3c00, 0x4000, 0xbc00])) },
  { name: 'c.shape', dtype: 'I64', shape: [2], data: () => bytesOf(BigInt64Array.from([64n, 172n])) },
  { name: 'd.empty', dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) },
];

test('round trip through the reader, sorted by name, header padded to 8 bytes', async () => {
  const file = join(dir, 'a.safetensors');
  const { size } = await writeSafetensors(file, tensors(), { format: 'pt' });
  const bytes = await readFile(file);
  assert.equal(bytes.length, size);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  assert.equal((8 + headerLen) % 8, 0);
  const json = bytes.subarray(8, 8 + headerLen).toString('utf8');
  assert.match(json, /^\{"__metadata__":\{"format":"pt"\},"a\.scales":/);
  const h = await readSafetensorsHeader(file);
  assert.deepEqual([...h.tensors.keys()], ['a.scales', 'b.qweight', 'c.shape', 'd.empty']);
  assert.deepEqual(h.metadata, { format: 'pt' });
  for (const t of tensors()) {
    const got = h.tensors.get(t.name)!;
    assert.equal(got.dtype, t.dtype);
    assert.deepEqual(got.shape, t.shape);
    const want = typeof t.data === 'function' ? await t.data() : t.data;
    assert.deepEqual(Buffer.from(await readTensorRaw(got)), Buffer.from(want));
  }
});

test('deterministic: the same tensors declared in another order give the same bytes', async () => {
  await writeSafetensors(join(dir, 'x.safetensors'), tensors());
  await writeSafetensors(join(dir, 'y.safetensors'), tensors().reverse());
  assert.deepEqual(await readFile(join(dir, 'x.safetensors')), await readFile(join(dir, 'y.safetensors')));
});

test('bad declarations are refused and nothing is left behind', async () => {
  const cases: [string, TensorToWrite[]][] = [
    ['declared twice', [tensors()[0]!, tensors()[0]!]],
    ['unknown dtype', [{ name: 'x', dtype: 'Q4', shape: [1], data: new Uint8Array(1) }]],
    ['needs', [{ name: 'x', dtype: 'F32', shape: [2], data: new Uint8Array(4) }]],
    ['non-negative integers', [{ name: 'x', dtype: 'F32', shape: [1.5], data: new Uint8Array(4) }]],
    ['invalid tensor name', [{ name: '', dtype: 'F32', shape: [1], data: new Uint8Array(4) }]],
    ['data function gave', [{ name: 'x', dtype: 'F32', shape: [2], data: () => new Uint8Array(4) }]],
  ];
  for (const [message, ts] of cases) {
    const file = join(dir, 'bad.safetensors');
    await assert.rejects(writeSafetensors(file, ts), (e: unknown) => e instanceof SafetensorsWriteError && e.message.includes(message), message);
    assert.ok(!(await readdir(dir)).some((f) => f.startsWith('bad.safetensors')), `${message}: no file left`);
  }
});
