// pullModel against the loopback Hub with faults: cuts, flipped bytes, slow answers, 429/5xx, 404.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, truncate, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { downloadFileToCacheDir } from '@huggingface/hub';
import { resolveHubModel } from '../../src/lock/resolve.js';
import { pullAndRead, pullModel, snapshotPath, storeSnapshot, type PullEvent } from '../../src/hub/pull.js';
import { sha256File } from '../../src/util/digest.js';
import { checkSnapshot, repairSnapshot } from '../../src/hub/repair.js';
import { Store } from '../../src/store/store.js';
import { snapshotEntryFile } from '../../src/hub/cache.js';
import { runStep } from '../../src/pipeline/step.js';
import type { PipelineEvent } from '../../src/pipeline/events.js';
import type { LockEntry } from '../../src/lock/types.js';
import { InputError, IntegrityError, NetworkError } from '../../src/util/errors.js';
import { startHubServer, type HubServer } from '../support/hub-server.js';
import { generatedBytes, hubConfig, model, storiesFiles, tempDir } from '../support/hub-fixtures.js';

const BIG = 4 * 1024 * 1024 + 123;
const bigBytes = generatedBytes(BIG, 7);
/** Several write batches and progress steps long, with cut points far apart. */
const LARGE = 33 * 1024 * 1024 + 7;
const largeBytes = generatedBytes(LARGE, 11);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let hub: HubServer;
before(async () => {
  hub = await startHubServer({
    repos: {
      'org/tiny': { files: await storiesFiles() },
      'org/big': { files: { 'config.json': '{"big":true}', 'weights.safetensors': bigBytes, 'copy/same.safetensors': bigBytes } },
      'org/large': { files: { 'large.safetensors': largeBytes } },
    },
    seed: 2024,
  });
});
after(() => hub.close());

async function locked(cfgDir: string, repo = 'org/big', files = ['**']): Promise<LockEntry> {
  const entry = await resolveHubModel(model({ repo, files }), hubConfig(hub.url, cfgDir));
  return { ...entry, fragment: 'test' };
}

function withFaults(t: { after: (fn: () => void) => void }, ...faults: HubServer['faults']): void {
  hub.faults.splice(0, hub.faults.length, ...faults);
  t.after(() => hub.faults.splice(0));
}

test('pull fills the HF cache layout: blobs, relative snapshot links, refs/main; a second pull downloads nothing', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/tiny', ['*.json', '*.safetensors', 'tokenizer.model']);
  const cfg = hubConfig(hub.url, dir);
  const events: PullEvent[] = [];
  const first = await pullModel(entry, cfg, { onEvent: (e) => events.push(e) });
  assert.equal(first.snapshotDir, snapshotPath(cfg, 'org/tiny', entry.commit));
  assert.equal(first.snapshotDir, join(dir, 'models--org--tiny', 'snapshots', entry.commit));
  for (const f of entry.files) {
    const at = join(first.snapshotDir, f.path);
    assert.ok((await lstat(at)).isSymbolicLink(), f.path);
    assert.match(await readlink(at), /^\.\.\/\.\.\/blobs\/[0-9a-f]{40,64}$/);
    assert.equal(sha256(await readFile(at)), f.sha256);
  }
  assert.equal(await readFile(join(dir, 'models--org--tiny', 'refs', 'main'), 'utf8'), entry.commit);
  assert.ok(events.some((e) => e.type === 'done' && e.path === 'model.safetensors'));

  hub.stats.reset();
  const again: PullEvent[] = [];
  const second = await pullModel(entry, cfg, { onEvent: (e) => again.push(e) });
  assert.equal(second.downloadedBytes, 0);
  assert.equal(hub.stats.requests.length, 0);
  assert.deepEqual(again.map((e) => e.type).sort(), entry.files.map(() => 'cached'));
});

test('two paths with the same content: downloaded once, both linked', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir);
  hub.stats.reset();
  const { snapshotDir, downloadedBytes } = await pullModel(entry, hubConfig(hub.url, dir));
  assert.equal(downloadedBytes, BIG);
  assert.equal(hub.stats.bytesFor('weights.safetensors') + hub.stats.bytesFor('copy/same.safetensors'), BIG);
  assert.equal(sha256(await readFile(join(snapshotDir, 'copy/same.safetensors'))), sha256(bigBytes));
});

test('a flipped byte: IntegrityError naming the file and both digests; nothing lands in snapshots/ or blobs/', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  withFaults(t, { kind: 'flip', path: 'weights.safetensors', flipAt: 1_000_000 });
  const expected = sha256(bigBytes);
  const flipped = Buffer.from(bigBytes);
  flipped[1_000_000]! ^= 0xff;
  await assert.rejects(pullModel(entry, hubConfig(hub.url, dir)), (e: unknown) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.equal(e.path, 'weights.safetensors');
    assert.equal(e.expectedDigest, `sha256:${expected}`);
    assert.equal(e.actualDigest, `sha256:${sha256(flipped)}`);
    assert.match(e.message, /weights\.safetensors.*sha256:[0-9a-f]{64}.*sha256:[0-9a-f]{64}/);
    return true;
  });
  const repoDir = join(dir, 'models--org--big');
  const snapshots = await readdir(join(repoDir, 'snapshots')).catch(() => []);
  for (const s of snapshots) assert.deepEqual(await readdir(join(repoDir, 'snapshots', s)), [], 'no snapshot entry');
  assert.deepEqual(await readdir(join(repoDir, 'blobs')).catch(() => []), [], 'no blob, no partial file');
});

test('20 random cuts mid-file all end in a complete, verified file, resuming where each cut left off', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  withFaults(t, { kind: 'cut', path: 'weights.safetensors', cutAt: 'random', times: 20 });
  hub.stats.reset();
  const retries: PullEvent[] = [];
  const { snapshotDir } = await pullModel(entry, hubConfig(hub.url, dir, { retries: 2 }), {
    onEvent: (e) => e.type === 'retry' && retries.push(e),
  });
  assert.equal(sha256(await readFile(join(snapshotDir, 'weights.safetensors'))), sha256(bigBytes));
  const data = hub.stats.requests.filter((r) => r.host === 'cdn');
  assert.equal(data.filter((r) => r.cut).length, 20, 'all 20 cuts happened');
  assert.equal(retries.length, 20);
  // Every resume asked for the rest only: what was served adds up to the file, give or take what
  // was in flight when a connection died.
  const ranged = data.filter((r) => r.range);
  assert.ok(ranged.length >= 15, `resumed with Range ${ranged.length} times`);
  const served = hub.stats.bytesFor('weights.safetensors');
  assert.ok(served >= BIG && served < BIG + 20 * 512 * 1024, `served ${served} for ${BIG}`);
});

test('a pull cut for good keeps its partial file; the next pull fetches only the missing part', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  const half = Math.floor(BIG / 2);
  withFaults(t, { kind: 'cut', path: 'weights.safetensors', cutAt: half, times: 1 });
  await assert.rejects(pullModel(entry, hubConfig(hub.url, dir, { retries: 0 })), (e: unknown) => {
    assert.ok(e instanceof NetworkError, String(e));
    assert.match(e.message, /weights\.safetensors/);
    return true;
  });
  const partial = join(dir, 'models--org--big', 'blobs', `${sha256(bigBytes)}.incomplete`);
  const kept = (await stat(partial)).size;
  assert.ok(kept > 0 && kept <= half, `kept ${kept}`);
  hub.stats.reset();
  const { snapshotDir, downloadedBytes } = await pullModel(entry, hubConfig(hub.url, dir));
  assert.equal(downloadedBytes, BIG - kept);
  assert.equal(hub.stats.bytesFor('weights.safetensors'), BIG - kept);
  assert.equal(hub.stats.requests.find((r) => r.host === 'cdn')!.range, `bytes=${kept}-`);
  assert.equal(sha256(await readFile(join(snapshotDir, 'weights.safetensors'))), sha256(bigBytes));
});

test('a corrupt partial file from an earlier run is detected and the file fetched again from zero', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  const blobs = join(dir, 'models--org--big', 'blobs');
  await mkdir(blobs, { recursive: true });
  const bad = Buffer.from(bigBytes.subarray(0, 1000));
  bad[10]! ^= 1;
  await writeFile(join(blobs, `${sha256(bigBytes)}.incomplete`), bad);
  const events: PullEvent[] = [];
  const { snapshotDir } = await pullModel(entry, hubConfig(hub.url, dir), { onEvent: (e) => events.push(e) });
  assert.equal(sha256(await readFile(join(snapshotDir, 'weights.safetensors'))), sha256(bigBytes));
  assert.ok(events.some((e) => e.type === 'retry' && /digest mismatch/.test(e.reason ?? '')));
});

test('a corrupt blob already in the cache is not trusted: re-hashed, replaced', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  const cfg = hubConfig(hub.url, dir);
  await pullModel(entry, cfg);
  const blob = join(dir, 'models--org--big', 'blobs', sha256(bigBytes));
  const bytes = await readFile(blob);
  bytes[5]! ^= 0xff;
  await writeFile(blob, bytes);
  const { downloadedBytes, snapshotDir } = await pullModel(entry, cfg);
  assert.equal(downloadedBytes, BIG);
  assert.equal(sha256(await readFile(join(snapshotDir, 'weights.safetensors'))), sha256(bigBytes));
});

test('429 then success, and 5xx, are retried with backoff', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  withFaults(t, { kind: 'status', status: 429, retryAfter: 0, times: 2 }, { kind: 'status', status: 502, times: 1 });
  const events: PullEvent[] = [];
  await pullModel(entry, hubConfig(hub.url, dir), { onEvent: (e) => events.push(e) });
  assert.deepEqual(events.filter((e) => e.type === 'retry').map((e) => e.reason), ['HTTP 429', 'HTTP 429', 'HTTP 502']);
});

test('5xx beyond the retry budget is a NetworkError naming the file', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  withFaults(t, { kind: 'status', status: 500 });
  await assert.rejects(pullModel(entry, hubConfig(hub.url, dir, { retries: 2 })), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.status, 500);
    assert.match(e.message, /weights\.safetensors from org\/big failed after 2 retries: HTTP 500/);
    return true;
  });
});

test('a slow server: answers slower than the idle timeout are retried; slow but steady ones complete', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  withFaults(t, { kind: 'slow', path: 'weights.safetensors', delayMs: 600, times: 1 }, { kind: 'slow', path: 'weights.safetensors', bytesPerSecond: 16 * 1024 * 1024, times: 1 });
  const events: PullEvent[] = [];
  const { snapshotDir } = await pullModel(entry, hubConfig(hub.url, dir, { timeoutMs: 300 }), { onEvent: (e) => events.push(e) });
  assert.equal(sha256(await readFile(join(snapshotDir, 'weights.safetensors'))), sha256(bigBytes));
  const retries = events.filter((e) => e.type === 'retry');
  assert.equal(retries.length, 1, JSON.stringify(retries));
  assert.match(retries[0]!.reason ?? '', /no data for 300 ms/);
});

test('a file body that stalls mid-way is given up after the stall timeout and resumed where it stopped', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  withFaults(t, { kind: 'stall', path: 'weights.safetensors', stallAt: 1_000_000, times: 1 });
  hub.stats.reset();
  const events: PullEvent[] = [];
  const { snapshotDir } = await pullModel(entry, hubConfig(hub.url, dir, { timeoutMs: 300 }), { onEvent: (e) => events.push(e) });
  assert.equal(sha256(await readFile(join(snapshotDir, 'weights.safetensors'))), sha256(bigBytes));
  assert.deepEqual(events.filter((e) => e.type === 'retry').map((e) => e.reason), ['no data for 300 ms']);
  const cdn = hub.stats.requests.filter((r) => r.host === 'cdn');
  assert.equal(cdn.length, 2);
  assert.equal(cdn[1]!.range, 'bytes=1000000-');
});

test('a locked file gone from the repo is reported as not found, with the file name', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  const gone = { ...entry, files: [{ ...entry.files[0]!, path: 'renamed.safetensors' }] };
  await assert.rejects(pullModel(gone, hubConfig(hub.url, dir)), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.status, 404);
    assert.equal(e.field, 'files');
    assert.match(e.message, /file "renamed\.safetensors" not found in org\/big@[0-9a-f]{40}/);
    return true;
  });
});

test('offline: pull works from the cache without a request; a missing file fails clearly', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir);
  await pullModel({ ...entry, files: entry.files.filter((f) => f.path !== 'weights.safetensors' && f.path !== 'copy/same.safetensors') }, hubConfig(hub.url, dir));
  hub.stats.reset();
  const offline = hubConfig(hub.url, dir, { offline: true });
  await pullModel({ ...entry, files: entry.files.filter((f) => f.path === 'config.json') }, offline);
  await assert.rejects(pullModel(entry, offline), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.field, 'HF_HUB_OFFLINE');
    assert.match(e.message, /offline mode \(HF_HUB_OFFLINE=1\): (copy\/same|weights)\.safetensors of org\/big@[0-9a-f]{12} \(sha256 [0-9a-f]{64}\) is not in the cache/);
    return true;
  });
  assert.equal(hub.stats.requests.length, 0);
});

test('the cache is shared with @huggingface/hub both ways', async (t) => {
  // Ours -> library: it finds our snapshot entry without a request.
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/tiny', ['config.json', 'model.safetensors']);
  await pullModel(entry, hubConfig(hub.url, dir));
  hub.stats.reset();
  const path = await downloadFileToCacheDir({ repo: 'org/tiny', path: 'model.safetensors', revision: entry.commit, cacheDir: dir, hubUrl: hub.url });
  assert.equal(path, join(snapshotPath(hubConfig(hub.url, dir), 'org/tiny', entry.commit), 'model.safetensors'));
  assert.equal(hub.stats.requests.length, 0);

  // Library -> ours: blobs it downloaded are verified and reused, not downloaded again.
  const other = await tempDir(t);
  for (const f of entry.files) await downloadFileToCacheDir({ repo: 'org/tiny', path: f.path, revision: entry.commit, cacheDir: other, hubUrl: hub.url });
  hub.stats.reset();
  const events: PullEvent[] = [];
  const { downloadedBytes } = await pullModel(entry, hubConfig(hub.url, other), { onEvent: (e) => events.push(e) });
  assert.equal(downloadedBytes, 0);
  assert.deepEqual(events.map((e) => e.type), ['cached', 'cached']);
});

test('an abort stops the pull and keeps the partial file for later', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  withFaults(t, { kind: 'slow', path: 'weights.safetensors', bytesPerSecond: 2 * 1024 * 1024 });
  const ctl = new AbortController();
  const pulling = pullModel(entry, hubConfig(hub.url, dir), {
    signal: ctl.signal,
    onEvent: (e) => e.type === 'progress' && (e.bytes ?? 0) >= 1 << 20 && ctl.abort(new Error('user pressed ^C')),
  });
  await assert.rejects(pulling, /user pressed \^C/);
  const partial = join(dir, 'models--org--big', 'blobs', `${sha256(bigBytes)}.incomplete`);
  assert.ok((await stat(partial)).size >= 1 << 20);
  await truncate(partial, 1); // still a valid prefix
});

test('lock entries with unsafe names or malformed digests are refused before any request', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['config.json']);
  hub.stats.reset();
  const cfg = hubConfig(hub.url, dir);
  await assert.rejects(pullModel({ ...entry, files: [{ ...entry.files[0]!, path: '../../etc/passwd' }] }, cfg), InputError);
  await assert.rejects(pullModel({ ...entry, files: [{ ...entry.files[0]!, sha256: 'abc' }] }, cfg), InputError);
  await assert.rejects(pullModel({ ...entry, commit: 'main' }, cfg), (e: unknown) => e instanceof InputError && e.field === 'commit');
  assert.equal(hub.stats.requests.length, 0);
});

test('two pulls of the same files at once: one downloads, the other waits and finds them cached', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  hub.stats.reset();
  const cfg = hubConfig(hub.url, dir);
  const [a, b] = await Promise.all([pullModel(entry, cfg), pullModel(entry, cfg)]);
  assert.equal(a.downloadedBytes + b.downloadedBytes, BIG);
  assert.equal(hub.stats.bytesFor('weights.safetensors'), BIG);
  assert.equal(sha256(await readFile(join(a.snapshotDir, 'weights.safetensors'))), sha256(bigBytes));
});

test('a lock file left by a process that died is taken over', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  const { hostname } = await import('node:os');
  const { spawnSync } = await import('node:child_process');
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  const blobs = join(dir, 'models--org--big', 'blobs');
  await mkdir(blobs, { recursive: true });
  await writeFile(join(blobs, `${sha256(bigBytes)}.lock`), `${dead} ${hostname()}`);
  const { snapshotDir } = await pullModel(entry, hubConfig(hub.url, dir));
  assert.equal(sha256(await readFile(join(snapshotDir, 'weights.safetensors'))), sha256(bigBytes));
  assert.deepEqual((await readdir(blobs)).sort(), [sha256(bigBytes)]);
});

test('a verified blob is stamped, and an unchanged stamped blob is trusted without re-reading it', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors']);
  const cfg = hubConfig(hub.url, dir);
  await pullModel(entry, cfg);
  const stampPath = join(dir, '.locks', 'models--org--big', `${sha256(bigBytes)}.bake-verified`);
  const stamp = JSON.parse(await readFile(stampPath, 'utf8')) as { sha256: string; size: number };
  assert.equal(stamp.sha256, sha256(bigBytes));
  assert.equal(stamp.size, BIG);
  // Flip a byte but keep size and mtime: the stamp is trusted (the same assumption git's index makes)...
  const { utimes } = await import('node:fs/promises');
  const blob = join(dir, 'models--org--big', 'blobs', sha256(bigBytes));
  const T = 1_700_000_000; // whole seconds survive utimes exactly
  await utimes(blob, T, T);
  assert.equal((await pullModel(entry, cfg)).downloadedBytes, 0, 'mtime changed: re-hashed, still good, stamped again');
  const bytes = await readFile(blob);
  bytes[7]! ^= 0xff;
  await writeFile(blob, bytes);
  await utimes(blob, T, T);
  assert.equal((await pullModel(entry, cfg)).downloadedBytes, 0);
  // ...and once the stamp is gone, the blob is re-hashed, found corrupt and replaced.
  await writeFile(stampPath, '{}');
  assert.equal((await pullModel(entry, cfg)).downloadedBytes, BIG);
  assert.equal(sha256(await readFile(blob)), sha256(bigBytes));
});

test('a 33 MiB file: random cuts, a resume across runs and a flipped byte near the end', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/large');
  withFaults(t, { kind: 'cut', path: 'large.safetensors', cutAt: 'random', times: 3 }, { kind: 'cut', path: 'large.safetensors', cutAt: (1 << 20) + 5, times: 1 });
  // retries: 0 -> the first cut ends the pull, leaving a partial file; the next pull resumes it.
  await assert.rejects(pullModel(entry, hubConfig(hub.url, dir, { retries: 0 })), NetworkError);
  const { snapshotDir } = await pullModel(entry, hubConfig(hub.url, dir));
  assert.equal(sha256(await readFile(join(snapshotDir, 'large.safetensors'))), sha256(largeBytes));

  const other = await tempDir(t);
  withFaults(t, { kind: 'flip', path: 'large.safetensors', flipAt: LARGE - 3 });
  await assert.rejects(pullModel(entry, hubConfig(hub.url, other)), (e: unknown) => {
    assert.ok(e instanceof IntegrityError);
    assert.equal(e.expectedDigest, `sha256:${sha256(largeBytes)}`);
    return true;
  });
});

test('repairSnapshot: a complete snapshot costs a stat per file; a deleted or truncated blob is downloaded again (that file only)', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir);
  const cfg = hubConfig(hub.url, dir);
  await pullModel(entry, cfg);
  hub.stats.reset();
  assert.deepEqual(await checkSnapshot(entry, cfg), []);
  assert.deepEqual((await repairSnapshot(entry, cfg)).repaired, []);
  assert.equal(hub.stats.requests.length, 0);

  const blob = join(dir, 'models--org--big', 'blobs', sha256(bigBytes));
  await rm(blob);
  assert.deepEqual((await checkSnapshot(entry, cfg)).map((p) => [p.path, p.problem]), [['copy/same.safetensors', 'missing'], ['weights.safetensors', 'missing']]);
  const fixed = await repairSnapshot(entry, cfg);
  assert.deepEqual(fixed.repaired, ['copy/same.safetensors', 'weights.safetensors']);
  assert.equal(fixed.downloadedBytes, BIG);
  assert.equal(hub.stats.bytesFor('config.json'), 0, 'the intact file was left alone');
  assert.equal(sha256(await readFile(join(snapshotPath(cfg, 'org/big', entry.commit), 'weights.safetensors'))), sha256(bigBytes));

  await truncate(blob, 1000);
  assert.deepEqual((await checkSnapshot(entry, cfg)).map((p) => [p.path, p.problem, p.size]), [['copy/same.safetensors', 'size', 1000], ['weights.safetensors', 'size', 1000]]);
  assert.equal((await repairSnapshot(entry, cfg)).downloadedBytes, BIG);
  assert.equal(sha256(await readFile(blob)), sha256(bigBytes));
});

test('repairSnapshot offline: a missing file is a NetworkError naming it and the fix; a wrong size an IntegrityError; no request', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors', 'config.json']);
  await pullModel(entry, hubConfig(hub.url, dir));
  const offline = hubConfig(hub.url, dir, { offline: true });
  const blob = join(dir, 'models--org--big', 'blobs', sha256(bigBytes));
  hub.stats.reset();
  await truncate(blob, 10);
  await assert.rejects(repairSnapshot(entry, offline), (e: unknown) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.match(e.message, /weights\.safetensors: expected 4194427 bytes, got 10 bytes/);
    assert.match(e.hint ?? '', /unset HF_HUB_OFFLINE/);
    return true;
  });
  await rm(blob);
  await assert.rejects(repairSnapshot(entry, offline), (e: unknown) => {
    assert.ok(e instanceof NetworkError, String(e));
    assert.equal(e.field, 'HF_HUB_OFFLINE');
    assert.match(e.message, /weights\.safetensors of org\/big@[0-9a-f]{12} is missing from the Hugging Face cache/);
    assert.match(e.hint ?? '', /unset HF_HUB_OFFLINE/);
    return true;
  });
  assert.equal(hub.stats.requests.length, 0);
});

test('pullAndRead: a cached blob corrupt with size and mtime unchanged (trusted by its stamp) is downloaded again, once; then an upstream that differs says so', async (t) => {
  const dir = await tempDir(t);
  const entry = await locked(dir, 'org/big', ['weights.safetensors', 'config.json']);
  const cfg = hubConfig(hub.url, dir);
  const { utimes } = await import('node:fs/promises');
  const blob = join(dir, 'models--org--big', 'blobs', sha256(bigBytes));
  const T = 1_700_000_000;
  const corrupt = async () => {
    const bytes = await readFile(blob);
    bytes[7]! ^= 0xff;
    await writeFile(blob, bytes);
    await utimes(blob, T, T);
  };
  await pullModel(entry, cfg);
  await utimes(blob, T, T);
  await pullModel(entry, cfg); // re-hashed once (mtime changed) and stamped with mtime T
  await corrupt();
  // What the artifact store does with a snapshot: hash every file against the lock.
  let reads = 0;
  const read = async (snapshotDir: string) => {
    reads++;
    for (const f of entry.files) {
      const { sha256: got } = await sha256File(join(snapshotDir, f.path));
      if (got !== f.sha256) throw new IntegrityError(join(snapshotDir, f.path), f.sha256, got);
    }
    return 'read';
  };
  hub.stats.reset();
  const events: PullEvent[] = [];
  assert.equal(await pullAndRead(entry, cfg, { onEvent: (e) => events.push(e) }, read), 'read');
  assert.equal(reads, 2);
  assert.equal(hub.stats.bytesFor('weights.safetensors'), BIG, 'downloaded again');
  assert.equal(hub.stats.bytesFor('config.json'), 0);
  assert.equal(sha256(await readFile(blob)), sha256(bigBytes));
  assert.ok(events.some((e) => e.type === 'retry' && e.path === 'weights.safetensors' && /does not match the lock/.test(e.reason ?? '')), JSON.stringify(events));

  // The same, but the Hub now serves other bytes than the lock pins: exit 3, saying so.
  await corrupt();
  withFaults(t, { kind: 'flip', path: 'weights.safetensors', flipAt: 99 });
  await assert.rejects(pullAndRead(entry, cfg, {}, read), (e: unknown) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.equal(e.path, 'weights.safetensors');
    assert.match(e.hint ?? '', /the upstream file differs from the lock/);
    assert.doesNotMatch(e.hint ?? '', /run the command again/);
    return true;
  });
  hub.faults.splice(0);

  // Offline it cannot be downloaded again: an IntegrityError saying how to fix it, no request.
  await pullModel(entry, cfg);
  await utimes(blob, T, T);
  await pullModel(entry, cfg);
  await corrupt();
  hub.stats.reset();
  await assert.rejects(pullAndRead(entry, hubConfig(hub.url, dir, { offline: true }), {}, read), (e: unknown) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.match(e.message, /weights\.safetensors/);
    assert.match(e.hint ?? '', /unset HF_HUB_OFFLINE/);
    return true;
  });
  assert.equal(hub.stats.requests.length, 0);
});

test('the pulled files enter the store checked against the lock: size and sha256, through links that stay in the repo folder', async (t) => {
  const dir = await tempDir(t);
  const cfg = hubConfig(hub.url, dir);
  const entry = await locked(dir, 'org/tiny', ['*.json', 'tokenizer.model']);
  await pullModel(entry, cfg);
  const store = new Store(await tempDir(t, 'bake-store-'));
  const files = await storeSnapshot(store, entry, cfg);
  assert.deepEqual(files, entry.files.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size })));

  // A lock whose size is off by one (sha256 unchanged) is an integrity failure naming the cached file.
  const wrongSize = { ...entry, files: entry.files.map((f) => (f.path === 'config.json' ? { ...f, size: f.size + 1 } : f)) };
  await assert.rejects(storeSnapshot(new Store(await tempDir(t, 'bake-store-')), wrongSize, cfg), (e: IntegrityError) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.equal(e.path, join(snapshotPath(cfg, 'org/tiny', entry.commit), 'config.json'));
    assert.match(e.message, /expected \d+ bytes, got \d+ bytes/);
    return true;
  });
  await assert.rejects(pullModel(wrongSize, cfg), IntegrityError);

  // A snapshot entry another tool pointed outside the repo's cache folder is not read.
  const outside = join(dir, 'elsewhere.json');
  await writeFile(outside, await readFile(join(snapshotPath(cfg, 'org/tiny', entry.commit), 'config.json')));
  const link = join(snapshotPath(cfg, 'org/tiny', entry.commit), 'config.json');
  await rm(link);
  await symlink(outside, link);
  await assert.rejects(storeSnapshot(new Store(await tempDir(t, 'bake-store-')), entry, cfg), (e: InputError) => e instanceof InputError && /config\.json is a symbolic link to .*elsewhere\.json, outside/.test(e.message));
});

test('one copy of the bytes: the store links to the cache blobs a pull verified (same inode, read-only), and keeps them when the cache deletes its name', async (t) => {
  const dir = await tempDir(t);
  const cfg = hubConfig(hub.url, dir);
  const entry = await locked(dir, 'org/big', ['config.json', 'weights.safetensors']);
  const store = new Store(await tempDir(t, 'bake-store-'));
  const files = await pullAndRead(entry, cfg, {}, () => storeSnapshot(store, entry, cfg));
  assert.deepEqual(files, entry.files.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size })));
  for (const f of entry.files) {
    const cached = (await snapshotEntryFile(cfg, 'org/big', entry.commit, f.path))!;
    const [a, b] = [await stat(cached), await stat(store.blobPath(f.sha256))];
    assert.equal(a.ino, b.ino, `${f.path}: one inode for the cache blob and the store blob`);
    assert.equal(a.dev, b.dev);
    assert.equal(b.nlink, 2, `${f.path}: two names, one copy`);
    assert.equal(b.mode & 0o777, 0o444, `${f.path}: read-only under both names`);
  }
  // The cache deletes its blob (another tool clears it): the store's name keeps the bytes.
  const weights = entry.files.find((f) => f.path === 'weights.safetensors')!;
  await rm((await snapshotEntryFile(cfg, 'org/big', entry.commit, weights.path))!);
  const { digest, artifact } = await store.putArtifact({ kind: 'source', files, meta: {} });
  assert.deepEqual(await store.missingBlobs(artifact), []);
  const out = await tempDir(t, 'bake-out-');
  await store.materialize(digest, out);
  assert.equal(sha256(await readFile(join(out, 'weights.safetensors'))), weights.sha256);
  assert.equal((await stat(store.blobPath(weights.sha256))).nlink, 2, 'the store blob and its materialized link');
});

test('a cache on another filesystem: the store keeps a verified reference, not a copy; once the cache deletes the blob, the fetch step runs again and says why', async (t) => {
  // /dev/shm is a tmpfs: another filesystem than the temp folder, so neither a link nor a reflink can be made.
  const shm = await mkdtemp(join('/dev/shm', 'bake-hub-'));
  t.after(() => rm(shm, { recursive: true, force: true }));
  const storeDir = await tempDir(t, 'bake-store-');
  assert.notEqual((await stat(shm)).dev, (await stat(storeDir)).dev, '/dev/shm must be another filesystem than the temp folder');
  const cfg = hubConfig(hub.url, shm);
  const entry = await locked(shm, 'org/big', ['weights.safetensors']);
  const store = new Store(storeDir);
  const f = entry.files[0]!;
  const produce = async () => store.putArtifact({ kind: 'source', files: await pullAndRead(entry, cfg, {}, () => storeSnapshot(store, entry, cfg)), meta: {} });
  const step = { key: 'f'.repeat(64), name: 'fetch' as const, version: 1, inputs: [], params: {}, model: 'big' };
  const first = await runStep(store, step, () => {}, produce);
  await assert.rejects(stat(store.blobPath(f.sha256)), 'no bytes in the store');
  const cached = (await snapshotEntryFile(cfg, 'org/big', entry.commit, f.path))!;
  assert.equal(await store.blobFile(f.sha256), cached, 'the reference leads to the cache blob');
  assert.equal((await runStep(store, step, () => {}, produce)).cached, true);

  await rm(cached);
  assert.match((await store.missingBlobs(first.artifact))[0]?.reason ?? '', /which the store referred to, is gone/);
  const events: PipelineEvent[] = [];
  hub.stats.reset();
  const again = await runStep(store, step, (e) => events.push(e), produce);
  assert.equal(again.cached, false, 'run again');
  assert.ok(events.some((e) => e.type === 'log' && e.level === 'warning' && /weights\.safetensors: .* is gone; running fetch again/.test(e.message)), JSON.stringify(events));
  assert.equal(hub.stats.bytesFor('weights.safetensors'), BIG, 'downloaded again');
  assert.equal(sha256(await readFile(await store.blobFile(f.sha256))), f.sha256);
});
