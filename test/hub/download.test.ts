// Parallel range downloads: parts over several connections into one temp file, sha256 in order, resume
// per part across runs, a server that ignores Range, a CDN that limits each connection.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { downloadVerified, type DownloadProgress } from '../../src/hub/download.js';
import { resolveUrl } from '../../src/hub/files.js';
import { pullModel } from '../../src/hub/pull.js';
import { resolveHubModel } from '../../src/lock/resolve.js';
import { NetworkError } from '../../src/util/errors.js';
import { startHubServer, type HubServer, type HubServerOptions } from '../support/hub-server.js';
import { generatedBytes, hubConfig, model, tempDir, TOKEN } from '../support/hub-fixtures.js';

const SIZE = 10 * 1024 * 1024 + 12_345;
const bytes = generatedBytes(SIZE, 21);
const SHA = createHash('sha256').update(bytes).digest('hex');
const PART = 2 * 1024 * 1024;

async function hubWith(t: { after: (fn: () => Promise<void>) => void }, extra: Partial<HubServerOptions> = {}): Promise<HubServer> {
  const hub = await startHubServer({
    repos: { 'org/w': { files: { 'w.safetensors': bytes }, private: true, readers: [TOKEN] } },
    tokens: [TOKEN],
    seed: 7,
    ...extra,
  });
  t.after(() => hub.close());
  return hub;
}

test('a link one connection fills: the other lanes never start (parallel parts would only cost CPU there)', async (t) => {
  const hub = await hubWith(t);
  const dir = await tempDir(t);
  hub.stats.reset();
  const { result } = await download(hub, dir, 4);
  assert.equal(result.sha256, SHA);
  assert.equal(result.connections, 1);
  const cdn = hub.stats.requests.filter((r) => r.host === 'cdn');
  assert.equal(new Set(cdn.map((r) => r.connection)).size, 1, 'one connection');
  assert.equal(hub.stats.bytesFor('w.safetensors'), SIZE);
});

/** Downloads w.safetensors with `connections` connections and parts of PART bytes. */
async function download(hub: HubServer, dir: string, connections: number, extra: { retries?: number; partBytes?: number; onProgress?: (p: DownloadProgress) => void } = {}) {
  const cfg = hubConfig(hub.url, dir, { token: TOKEN, retries: extra.retries ?? 3 });
  const incomplete = join(dir, 'blob.incomplete');
  const commit = hub.commitOf('org/w');
  const result = await downloadVerified(cfg, resolveUrl(cfg, 'org/w', commit, 'w.safetensors'), incomplete, join(dir, 'blob'), { size: SIZE, sha256: SHA }, { repo: 'org/w', revision: commit, path: 'w.safetensors' }, {
    connections,
    partBytes: extra.partBytes ?? PART,
    ...(extra.onProgress ? { onProgress: extra.onProgress } : {}),
  });
  return { result, incomplete };
}

test('parts over several connections land in one file, verified; the token never reaches the CDN', async (t) => {
  // A CDN that holds each connection back (8 MiB/s): the first lane's rate calls the others in.
  const hub = await hubWith(t, { connectionBytesPerSecond: 8 << 20 });
  const dir = await tempDir(t);
  hub.stats.reset();
  const { result } = await download(hub, dir, 4);
  assert.equal(result.sha256, SHA);
  assert.equal(result.downloadedBytes, SIZE);
  assert.equal(result.connections, 4);
  assert.ok((await readFile(join(dir, 'blob'))).equals(bytes));
  const cdn = hub.stats.requests.filter((r) => r.host === 'cdn');
  // Six parts (five of 2 MiB and the rest), each asked for by its own Range request.
  assert.deepEqual(cdn.map((r) => r.range).sort(), [0, 1, 2, 3, 4, 5].map((k) => `bytes=${k * PART}-${k === 5 ? '' : (k + 1) * PART - 1}`).sort());
  assert.ok(new Set(cdn.map((r) => r.connection)).size >= 2, 'several connections');
  assert.equal(hub.stats.bytesFor('w.safetensors'), SIZE, 'no byte fetched twice');
  assert.ok(cdn.every((r) => !r.authorization), 'no token to the CDN');
  assert.ok(hub.stats.requests.filter((r) => r.host === 'hub').every((r) => r.authorization), 'the token to the Hub');
  await assert.rejects(stat(join(dir, 'blob.incomplete.parts')), 'no sidecar left');
});

test('a CDN that limits each connection: four connections are about four times as fast as one', async (t) => {
  // 2 MiB/s per connection: one connection needs ~5 s for 10 MiB, four ~1.3 s.
  const hub = await hubWith(t, { connectionBytesPerSecond: 2 * 1024 * 1024 });
  const timed = async (connections: number) => {
    const dir = await tempDir(t);
    const t0 = Date.now();
    // Eight equal parts: two rounds of four connections.
    const { result } = await download(hub, dir, connections, { partBytes: Math.ceil(SIZE / 8) });
    assert.equal(result.sha256, SHA);
    return Date.now() - t0;
  };
  const one = await timed(1);
  const four = await timed(4);
  assert.ok(one >= 4500, `one connection is held to the rate (${one} ms)`);
  assert.ok(four * 2.5 < one, `four connections: ${four} ms, one: ${one} ms`);
});

test('a download cut for good keeps its parts; the next run fetches only what is missing', async (t) => {
  const hub = await hubWith(t);
  const dir = await tempDir(t);
  // The first part's answer is cut half-way; no retries, so the run fails (the other lane is stopped).
  hub.faults.push({ kind: 'cut', path: 'w.safetensors', cutAt: PART / 2, times: 1 });
  await assert.rejects(download(hub, dir, 2, { retries: 0 }), NetworkError);
  const sidecar = JSON.parse(await readFile(join(dir, 'blob.incomplete.parts'), 'utf8')) as { parts: [number, number, number][] };
  const kept = sidecar.parts.reduce((n, p) => n + p[2], 0);
  assert.ok(kept > 0 && kept < SIZE, `kept ${kept}`);
  assert.ok(sidecar.parts.some((p) => p[2] > 0 && p[2] < p[1] - p[0]), 'a part half done');
  const servedBefore = hub.stats.bytesFor('w.safetensors');
  hub.faults.splice(0);
  hub.stats.reset();
  const { result } = await download(hub, dir, 2);
  assert.equal(result.sha256, SHA);
  assert.equal(result.downloadedBytes, SIZE - kept);
  assert.equal(hub.stats.bytesFor('w.safetensors'), SIZE - kept, 'only the missing bytes');
  assert.ok(servedBefore >= kept);
  assert.ok((await readFile(join(dir, 'blob'))).equals(bytes));
  await assert.rejects(stat(join(dir, 'blob.incomplete.parts')));
});

test('random cuts across parts: every part resumes where it was cut, the file verifies', async (t) => {
  const hub = await hubWith(t);
  const dir = await tempDir(t);
  hub.faults.push({ kind: 'cut', path: 'w.safetensors', cutAt: 'random', times: 12 });
  const retries: DownloadProgress[] = [];
  const { result } = await download(hub, dir, 3, { onProgress: (p) => p.type === 'retry' && retries.push(p) });
  assert.equal(result.sha256, SHA);
  // A planned cut past the end of the part asked for does not happen (the plan is over the whole file).
  const cuts = hub.stats.requests.filter((r) => r.cut).length;
  assert.ok(cuts >= 4, `${cuts} cuts`);
  assert.equal(retries.length, cuts);
  assert.ok(hub.stats.bytesFor('w.safetensors') < SIZE + cuts * 512 * 1024);
});

test('a server that ignores Range: one connection from the start, said so', async (t) => {
  const hub = await hubWith(t);
  const dir = await tempDir(t);
  hub.faults.push({ kind: 'no-range', path: 'w.safetensors' });
  const events: DownloadProgress[] = [];
  const { result } = await download(hub, dir, 4, { onProgress: (p) => events.push(p) });
  assert.equal(result.sha256, SHA);
  assert.ok(events.some((e) => e.type === 'retry' && /ignores Range/.test(e.reason ?? '')), JSON.stringify(events.filter((e) => e.type === 'retry')));
  assert.ok((await readFile(join(dir, 'blob'))).equals(bytes));
});

test('pullModel fetches a large file in parts (cfg.connections) and a small one as one stream', async (t) => {
  // Each connection held to 24 MiB/s, as a CDN does: the parts go out over several connections.
  const hub = await startHubServer({ repos: { 'org/p': { files: { 'big.safetensors': generatedBytes(40 * 1024 * 1024 + 1, 3), 'config.json': '{"a":1}' } } }, connectionBytesPerSecond: 24 << 20 });
  t.after(() => hub.close());
  const dir = await tempDir(t);
  const entry = { ...(await resolveHubModel(model({ repo: 'org/p', files: ['**'] }), hubConfig(hub.url, dir))), fragment: 'x' };
  hub.stats.reset();
  const { snapshotDir } = await pullModel(entry, hubConfig(hub.url, dir, { connections: 3 }));
  const cdn = hub.stats.requests.filter((r) => r.path === 'big.safetensors' && r.host === 'cdn');
  // Parts cover the file once, in order; the last ones are smaller (a shorter hash tail).
  const size = 40 * 1024 * 1024 + 1;
  const ranges = cdn.map((r) => /^bytes=(\d+)-(\d*)$/.exec(r.range ?? '')!).map((m) => [Number(m[1]), m[2] ? Number(m[2]) + 1 : size] as const).sort((a, b) => a[0] - b[0]);
  assert.ok(ranges.length >= 6, `${ranges.length} parts`);
  ranges.forEach(([start], i) => assert.equal(start, i === 0 ? 0 : ranges[i - 1]![1], 'contiguous'));
  assert.equal(ranges[ranges.length - 1]![1], size);
  const lengths = ranges.map(([a, b]) => b - a);
  assert.ok(lengths[lengths.length - 2]! < lengths[0]!, `tail parts smaller: ${lengths.join(', ')}`);
  assert.equal(createHash('sha256').update(await readFile(join(snapshotDir, 'big.safetensors'))).digest('hex'), entry.files.find((f) => f.path === 'big.safetensors')!.sha256);
});
