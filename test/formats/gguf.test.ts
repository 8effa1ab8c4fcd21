// GGUF reader/writer: every metadata type round-trips, phases are enforced, malformed files give
// InputErrors (never a crash or a huge allocation).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GgufWriter, readGguf, readTensorBytes, type GgufKv } from '../../src/formats/gguf/index.js';
import { ggmlTypeById, tensorBytes } from '../../src/quant/gguf/index.js';
import { InputError } from '../../src/util/errors.js';

let dir: string;
before(async () => { dir = await mkdtemp(join(tmpdir(), 'bake-gguf-format-')); });
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

const sizer = (id: number, ne: readonly number[]): number | undefined => {
  const t = ggmlTypeById(id);
  return t ? tensorBytes(t, ne) : undefined;
};

const ALL_KVS: GgufKv[] = [
  { key: 'a.u8', type: 'u8', value: 255 },
  { key: 'a.i8', type: 'i8', value: -128 },
  { key: 'a.u16', type: 'u16', value: 65535 },
  { key: 'a.i16', type: 'i16', value: -32768 },
  { key: 'a.u32', type: 'u32', value: 4294967295 },
  { key: 'a.i32', type: 'i32', value: -2147483648 },
  { key: 'a.f32', type: 'f32', value: 1.5 },
  { key: 'a.bool', type: 'bool', value: true },
  { key: 'a.string', type: 'string', value: 'héllo ▁ 🦙' },
  { key: 'a.u64', type: 'u64', value: 2n ** 64n - 1n },
  { key: 'a.i64', type: 'i64', value: -(2n ** 63n) },
  { key: 'a.f64', type: 'f64', value: Math.PI },
  { key: 'a.small_u64', type: 'u64', value: 42 },
  { key: 'a.strings', type: 'array', value: { itemType: 'string', values: ['x', '', 'zz'] } },
  { key: 'a.f32s', type: 'array', value: { itemType: 'f32', values: [0.25, -2] } },
  { key: 'a.nested', type: 'array', value: { itemType: 'array', values: [{ itemType: 'i32', values: [1, 2] }, { itemType: 'bool', values: [false] }] } },
  { key: 'a.empty', type: 'array', value: { itemType: 'u8', values: [] } },
];

async function writeSample(path: string): Promise<void> {
  const w = GgufWriter.create(path);
  for (const kv of ALL_KVS) w.addKv(kv);
  w.addTensorInfo('t.a', [3], 0, 12);
  w.addTensorInfo('t.b', [32, 2], 8, 68);
  await w.writeTensorData('t.a', new Uint8Array(new Float32Array([1, 2, 3]).buffer));
  await w.writeTensorData('t.b', new Uint8Array(68).fill(7));
  await w.finish();
}

describe('GGUF writer and reader', () => {
  test('every metadata type and nested arrays round-trip; tensors are aligned and readable', async () => {
    const path = join(dir, 'all.gguf');
    await writeSample(path);
    const g = await readGguf(path, { tensorBytes: sizer });
    assert.equal(g.version, 3);
    assert.deepEqual(g.kvs, ALL_KVS);
    assert.deepEqual(g.tensors.map((t) => [t.name, t.dims, t.type, t.offset]), [['t.a', [3], 0, 0], ['t.b', [32, 2], 8, 32]]);
    assert.equal(g.dataOffset % 32, 0);
    assert.equal(g.fileSize, g.dataOffset + 32 + 96); // the last tensor is padded too
    const a = await readTensorBytes(g, g.tensors[0]!, 12);
    assert.deepEqual([...new Float32Array(a.buffer)], [1, 2, 3]);
  });

  test('a non-default alignment is written as general.alignment and honoured by the reader', async () => {
    const path = join(dir, 'align64.gguf');
    const w = GgufWriter.create(path, { alignment: 64 });
    assert.throws(() => w.addKv({ key: 'general.alignment', type: 'u32', value: 32 }), /duplicate key|must be the u32 64/);
    w.addTensorInfo('a', [3], 0, 12);
    w.addTensorInfo('b', [5], 0, 20);
    await w.writeTensorData('a', new Uint8Array(12));
    await w.writeTensorData('b', new Uint8Array(20).fill(1));
    await w.finish();
    const g = await readGguf(path, { tensorBytes: sizer });
    assert.equal(g.alignment, 64);
    assert.equal(g.dataOffset % 64, 0);
    assert.deepEqual(g.tensors.map((t) => t.offset), [0, 64]);
    assert.deepEqual([...(await readTensorBytes(g, g.tensors[1]!, 20))], new Array(20).fill(1));
  });

  test('phases: key-values after tensor infos, data out of order, missing data and wrong sizes are refused', async () => {
    const w = GgufWriter.create(join(dir, 'phases.gguf'));
    w.addKv({ key: 'k', type: 'u32', value: 1 });
    assert.throws(() => w.addKv({ key: 'k', type: 'u32', value: 2 }), /duplicate key/);
    w.addTensorInfo('x', [4], 0, 16);
    w.addTensorInfo('y', [4], 0, 16);
    assert.throws(() => w.addKv({ key: 'late', type: 'u32', value: 1 }), /not allowed in phase 'tensorInfo'/);
    await assert.rejects(w.writeTensorData('y', new Uint8Array(16)), /expected data for x/);
    const w2 = GgufWriter.create(join(dir, 'phases2.gguf'));
    w2.addTensorInfo('x', [4], 0, 16);
    await assert.rejects(w2.writeTensorData('x', new Uint8Array(15)), /declared 16 bytes, got 15/);
    const w3 = GgufWriter.create(join(dir, 'phases3.gguf'));
    w3.addTensorInfo('x', [4], 0, 16);
    await assert.rejects(w3.finish(), /still missing data/);
    assert.throws(() => GgufWriter.create(join(dir, 'x.gguf')).addKv({ key: 'bad', type: 'u8', value: 300 }), /not a valid u8/);
    // Nothing half-written is left behind.
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('phases')), []);
  });
});

describe('GGUF reader on malformed files', () => {
  async function expectInputError(bytes: Uint8Array, pattern: RegExp): Promise<void> {
    const path = join(dir, 'bad.gguf');
    await writeFile(path, bytes);
    await assert.rejects(readGguf(path, { tensorBytes: sizer }), (err: unknown) => {
      assert.ok(err instanceof InputError, `expected InputError, got ${String(err)}`);
      assert.match((err as Error).message, pattern);
      return true;
    });
  }

  test('bad magic, unknown version, truncation at every byte of the header', async () => {
    const path = join(dir, 'good.gguf');
    await writeSample(path);
    const good = await readFile(path);
    await expectInputError(Buffer.from('NOPE' + 'x'.repeat(40)), /bad magic/);
    const v9 = Buffer.from(good);
    v9.writeUInt32LE(9, 4);
    await expectInputError(v9, /unsupported GGUF version 9/);
    const g = await readGguf(path);
    for (let cut = 0; cut < g.dataOffset; cut += 7) {
      const p = join(dir, `cut.gguf`);
      await writeFile(p, good.subarray(0, cut));
      await assert.rejects(readGguf(p, { tensorBytes: sizer }), InputError, `cut at ${cut}`);
    }
    // Cut inside tensor data: the header parses, the size check catches it.
    await expectInputError(good.subarray(0, good.length - 40), /runs past the end of the file/);
  });

  test('lying counts and lengths are refused before allocating', async () => {
    const head = Buffer.alloc(24);
    head.writeUInt32LE(0x46554747, 0);
    head.writeUInt32LE(3, 4);
    head.writeBigUInt64LE(0n, 8);
    head.writeBigUInt64LE(2n ** 60n, 16);
    await expectInputError(head, /key-value count/);
    const str = Buffer.concat([head.subarray(0, 16), u64(1n), u64(2n ** 40n), Buffer.from('abc')]);
    await expectInputError(str, /length is 1099511627776/);
    const arr = Buffer.concat([head.subarray(0, 16), u64(1n), u64(1n), Buffer.from('k'), u32(9), u32(4), u64(2n ** 50n)]);
    await expectInputError(arr, /element count/);
    const badType = Buffer.concat([head.subarray(0, 16), u64(1n), u64(1n), Buffer.from('k'), u32(77)]);
    await expectInputError(badType, /unknown value type 77/);
  });

  test('tensor offsets that are unaligned, overlapping or of unknown type are refused', async () => {
    const mk = (tensors: [string, number, number][]): Buffer => Buffer.concat([
      u32(0x46554747), u32(3), u64(BigInt(tensors.length)), u64(0n),
      ...tensors.map(([name, type, off]) => Buffer.concat([u64(BigInt(name.length)), Buffer.from(name), u32(1), u64(32n), u32(type), u64(BigInt(off))])),
      Buffer.alloc(256),
    ]);
    await expectInputError(mk([['a', 0, 3]]), /not a multiple of the alignment/);
    await expectInputError(mk([['a', 0, 0], ['b', 0, 64]]), /overlap/);
    await expectInputError(mk([['a', 99, 0]]), /cannot size/);
  });
});

function u32(v: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; }
function u64(v: bigint): Buffer { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); return b; }
