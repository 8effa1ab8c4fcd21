// Layer packing: headers byte for byte as tar-stream writes them (so layer digests do not move), long
// and non-ASCII names, sizes past 8 GiB; files that change while packed; a packed layer read back.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFile, chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import tar from 'tar-stream';
import { dirLayer } from '../../../src/image/oci/index.js';
import { tarHeader } from '../../../src/image/oci/layer.js';
import { InputError } from '../../../src/util/errors.js';

/** What tar-stream's pack writes before an entry's data, for the same header. */
async function tarStreamHeader(h: { name: string; type: 'file' | 'directory'; mode: number; size: number; mtime: number }): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
  pack.on('error', () => undefined);
  pack.entry({ name: h.name, type: h.type, mode: h.mode, size: h.size, mtime: new Date(h.mtime * 1000), uid: 0, gid: 0, uname: '', gname: '' });
  await new Promise((r) => setTimeout(r, 5));
  pack.destroy();
  return Buffer.concat(chunks);
}

test('tar headers are byte for byte what tar-stream writes: short, split, PAX and non-ASCII names, directories, modes, sizes past 8 GiB', async () => {
  const names = [
    'a',
    'app/models/m/config.json',
    'x'.repeat(100),
    'x'.repeat(101),
    `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(90)}.bin`,
    `${'p'.repeat(155)}/${'n'.repeat(100)}`,
    `${'p'.repeat(156)}/n`,
    'y'.repeat(300),
    'app/models/m/héllo wörld ✓.txt',
    'app/models/m/日本語/ファイル.safetensors',
  ];
  const cases: Parameters<typeof tarHeader>[0][] = [];
  for (const name of names) {
    for (const size of [0, 1, 511, 512, 513, 8 * 1024 ** 3 - 1, 8 * 1024 ** 3, 70 * 1024 ** 3 + 12345]) {
      cases.push({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, size, mtime: 1_700_000_000 });
    }
    cases.push({ name: `${name}/`, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 });
    cases.push({ name, type: 'file', mode: 0o755, uid: 0, gid: 0, size: 77, mtime: 2 ** 33 + 5 });
  }
  for (const c of cases) {
    const ours = tarHeader(c);
    const theirs = await tarStreamHeader(c);
    assert.ok(ours.equals(theirs), `${c.name.slice(0, 40)}… ${c.type} size ${c.size}: ${ours.length} vs ${theirs.length} bytes`);
  }
});

async function folder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-layer-'));
  await mkdir(join(dir, 'sub', `${'d'.repeat(70)}`, `${'e'.repeat(70)}`), { recursive: true });
  await writeFile(join(dir, 'weights.bin'), Buffer.alloc(9 * 1024 * 1024 + 7, 3)); // several read buffers
  await writeFile(join(dir, 'sub', `${'d'.repeat(70)}`, `${'e'.repeat(70)}`, `${'f'.repeat(90)}.json`), '{}');
  await writeFile(join(dir, 'héllo.txt'), 'unicode');
  await writeFile(join(dir, 'run.sh'), '#!/bin/sh\n');
  await chmod(join(dir, 'run.sh'), 0o755);
  await writeFile(join(dir, 'empty'), '');
  return dir;
}

async function entriesOf(stream: NodeJS.ReadableStream): Promise<Map<string, { mode: number; sha256: string; size: number }>> {
  const out = new Map<string, { mode: number; sha256: string; size: number }>();
  const extract = tar.extract();
  Readable.from(stream as AsyncIterable<Buffer>).pipe(extract);
  for await (const entry of extract) {
    const h = createHash('sha256');
    let size = 0;
    for await (const c of entry) {
      h.update(c as Buffer);
      size += (c as Buffer).length;
    }
    out.set(entry.header.name, { mode: entry.header.mode!, sha256: h.digest('hex'), size });
  }
  return out;
}

test('a packed layer reads back: every file whole, long and non-ASCII names, modes; cached and uncached give one digest', async (t) => {
  const dir = await folder();
  const cacheDir = await mkdtemp(join(tmpdir(), 'bake-layer-cache-'));
  t.after(() => Promise.all([rm(dir, { recursive: true, force: true }), rm(cacheDir, { recursive: true, force: true })]));
  const plain = await dirLayer(dir, 'app/models/m', { compression: 'none', epoch: 1_700_000_000 });
  let progress = 0;
  const cached = await dirLayer(dir, 'app/models/m', { compression: 'none', epoch: 1_700_000_000, cacheDir, onProgress: (n) => (progress += n) });
  assert.equal(cached.digest, plain.digest);
  assert.equal(cached.size, plain.size);
  assert.equal(progress, plain.size, 'progress counts every byte of the tar');
  const stored = await readFile(cached.verifiedFile!);
  assert.equal(`sha256:${createHash('sha256').update(stored).digest('hex')}`, cached.digest, 'the saved blob is what was hashed');
  const entries = await entriesOf(await plain.open());
  const weights = entries.get('app/models/m/weights.bin')!;
  assert.equal(weights.size, 9 * 1024 * 1024 + 7);
  assert.equal(weights.sha256, createHash('sha256').update(Buffer.alloc(9 * 1024 * 1024 + 7, 3)).digest('hex'));
  assert.equal(entries.get('app/models/m/héllo.txt')?.size, 7);
  assert.equal(entries.get(`app/models/m/sub/${'d'.repeat(70)}/${'e'.repeat(70)}/${'f'.repeat(90)}.json`)?.size, 2);
  assert.equal(entries.get('app/models/m/run.sh')?.mode, 0o755);
  assert.equal(entries.get('app/models/m/empty')?.size, 0);
  const gz = await dirLayer(dir, 'app/models/m', { compression: 'gzip', epoch: 1_700_000_000, cacheDir });
  assert.equal(gz.diffId, plain.digest);
});

test('a file that grows while it is packed is refused naming it; nothing is cached', async (t) => {
  const dir = await folder();
  const cacheDir = await mkdtemp(join(tmpdir(), 'bake-layer-cache-'));
  t.after(() => Promise.all([rm(dir, { recursive: true, force: true }), rm(cacheDir, { recursive: true, force: true })]));
  let grown = false;
  await assert.rejects(dirLayer(dir, 'app/models/m', {
    compression: 'none',
    epoch: 0,
    cacheDir,
    onProgress: () => {
      if (!grown) {
        grown = true;
        void appendFile(join(dir, 'weights.bin'), 'more');
      }
    },
  }), (e: unknown) => e instanceof InputError && /weights\.bin (grew|changed size)/.test(e.message));
  const { readdir } = await import('node:fs/promises');
  assert.deepEqual(await readdir(join(cacheDir, 'blobs', 'sha256')).catch(() => []), [], 'no blob kept');
});
