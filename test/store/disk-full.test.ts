// A full disk, for real: a tmpfs of a few hundred KiB (mounting needs root, as `make test` runs). Every
// write path names the path and the bytes it needed, and leaves no temp or half-written file behind.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Store } from '../../src/store/store.js';
import { sha256Bytes } from '../../src/util/digest.js';
import { DiskFullError } from '../../src/util/errors.js';
import { writeFileAtomic } from '../../src/util/fs.js';
import { bake } from '../support/cli.js';

const ROOT = process.getuid?.() === 0;
const SKIP = ROOT ? false : 'mounting a small tmpfs needs root (make test runs as root)';
const KIB = 1024;
let small: string; // a 256 KiB tmpfs
let big: string; // a normal temp folder
before(async () => {
  if (!ROOT) return;
  big = await mkdtemp(join(tmpdir(), 'bake-diskfull-'));
  small = join(big, 'small');
  await mkdir(small);
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${256 * KIB}`, 'tmpfs', small], { encoding: 'utf8' });
  assert.equal(r.status, 0, `mount -t tmpfs failed: ${r.stderr}`);
});
after(async () => {
  if (!ROOT) return;
  spawnSync('umount', [small]);
  await rm(big, { recursive: true, force: true });
});

/** Every file under `dir`, relative. */
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) if (!e.isDirectory()) out.push(join(e.parentPath ?? e.path, e.name).slice(dir.length + 1));
  return out.sort();
}

function assertDiskFull(err: unknown, path: string, needed: number): true {
  assert.ok(err instanceof DiskFullError, `expected DiskFullError, got ${String(err)}`);
  assert.equal(err.path, path);
  assert.equal(err.needed, needed);
  assert.equal(err.exit, 'failure');
  assert.ok(err.free !== undefined && err.free < needed, `free ${err.free}`);
  assert.match(err.message, new RegExp(`needs .* \\(${needed} bytes\\)`));
  return true;
}

test('the store on a full disk: putFile and putBytes name the blob and the size, and leave no temp file', { skip: SKIP }, async () => {
  const store = new Store(join(small, 'store'));
  const src = join(big, 'weights.bin');
  const data = new Uint8Array(512 * KIB).fill(7);
  await writeFile(src, data);
  await assert.rejects(store.putFile(src), (e) => assertDiskFull(e, join(store.root, 'blobs', 'sha256'), data.length));
  await assert.rejects(store.putBytes(data), (e) => assertDiskFull(e, store.blobPath(sha256Bytes(data)), data.length));
  assert.deepEqual(await files(small), []);
});

test('writeFileAtomic on a full disk names the target and the size and leaves no temp file', { skip: SKIP }, async () => {
  const target = join(small, 'out', 'big.json');
  await assert.rejects(writeFileAtomic(target, 'x'.repeat(300 * KIB)), (e) => assertDiskFull(e, target, 300 * KIB));
  assert.deepEqual(await files(small), []);
});

test('materialize onto a full disk removes what it placed and names the folder and the bytes needed', { skip: SKIP }, async () => {
  const store = new Store(join(big, 'store')); // another filesystem: no hard links, so copies
  const a = await store.putBytes(new Uint8Array(100 * KIB).fill(1));
  const b = await store.putBytes(new Uint8Array(200 * KIB).fill(2));
  const { digest } = await store.putArtifact({ kind: 'model', files: [{ path: 'a.bin', ...a }, { path: 'sub/b.bin', ...b }], meta: {} });
  const dir = join(small, 'models', 'm');
  await assert.rejects(store.materialize(digest, dir), (e) => assertDiskFull(e, dir, 300 * KIB));
  assert.deepEqual(await files(small), []);
});

test('bake materialize onto a full disk exits 1 naming the folder and the space needed, leaving no model file', { skip: SKIP }, async () => {
  const dir = await mkdtemp(join(big, 'project-'));
  await mkdir(join(dir, 'recipes'));
  await mkdir(join(dir, 'models', 'm'), { recursive: true });
  await writeFile(join(dir, 'models', 'm', 'weights.dat'), new Uint8Array(400 * KIB).fill(3));
  await writeFile(join(dir, 'recipes', 't.yaml'), 'image: { name: bake.local/t, version: 0.1.0 }\nmodels:\n  - id: m\n    path: ../models/m\n    files: [weights.dat]\n    quantize: { format: none }\ntargets: { cpu: { base: scratch } }\n');
  const env = { BAKE_STORE: join(big, 'cli-store') };
  const locked = await bake(['-C', dir, 'lock', 't'], { cwd: dir, env });
  assert.equal(locked.code, 0, locked.stderr);
  const out = join(small, 'out');
  const r = await bake(['-C', dir, 'materialize', 't', '--out', out], { cwd: dir, env });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`error: ${join(out, 'm')}: no space left on the device: writing this needs .* \\(\\d+ bytes\\), .* free there`));
  assert.match(r.stderr, /fix: /);
  assert.deepEqual(await files(small), []);
});
