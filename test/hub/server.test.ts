// The loopback Hub speaks the protocol @huggingface/hub expects: checked with the library itself.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { downloadFile, fileDownloadInfo, listFiles, modelInfo, pathsInfo } from '@huggingface/hub';
import { startHubServer, type HubServer } from '../support/hub-server.js';
import { STORIES_HF, STORIES_SAFETENSORS_SHA256, storiesFiles } from '../support/hub-fixtures.js';

let hub: HubServer;
before(async () => {
  hub = await startHubServer({ repos: { 'org/tiny': { files: { ...(await storiesFiles()), 'sub/dir/notes.txt': 'hello\n' } } } });
});
after(() => hub.close());

test('modelInfo gives the commit sha and the file names', async () => {
  const info = await modelInfo({ name: 'org/tiny', hubUrl: hub.url, additionalFields: ['sha', 'filePaths'] });
  assert.equal(info.sha, hub.commitOf('org/tiny'));
  assert.ok(info.filePaths.includes('model.safetensors'));
  assert.equal(info.private, false);
});

test('listFiles: recursive listing with LFS oids; a folder listed alone', async () => {
  const all = [];
  for await (const e of listFiles({ repo: 'org/tiny', hubUrl: hub.url, recursive: true })) all.push(e);
  const weights = all.find((e) => e.path === 'model.safetensors')!;
  assert.equal(weights.lfs?.oid, STORIES_SAFETENSORS_SHA256);
  assert.equal(weights.size, 1_044_992);
  assert.ok(all.some((e) => e.type === 'directory' && e.path === 'sub/dir'));
  const sub = [];
  for await (const e of listFiles({ repo: 'org/tiny', hubUrl: hub.url, path: 'sub' })) sub.push(e.path);
  assert.deepEqual(sub, ['sub/dir']);
});

test('pathsInfo answers for the paths asked, with lastCommit when expanded', async () => {
  const infos = await pathsInfo({ repo: 'org/tiny', hubUrl: hub.url, paths: ['config.json', 'tokenizer.model', 'nope'], expand: true });
  assert.deepEqual(infos.map((i) => i.path), ['config.json', 'tokenizer.model']);
  assert.equal(infos[1]!.lfs?.size, 8050);
  assert.equal(infos[0]!.lastCommit.id, hub.commitOf('org/tiny'));
});

test('fileDownloadInfo: size from Content-Range, ETag as sent, null for a missing file', async () => {
  const small = await fileDownloadInfo({ repo: 'org/tiny', hubUrl: hub.url, path: 'config.json' });
  const config = await readFile(join(STORIES_HF, 'config.json'));
  const gitOid = createHash('sha1').update(`blob ${config.length}\0`).update(config).digest('hex');
  assert.equal(small?.size, config.length);
  assert.equal(small?.etag, `"${gitOid}"`);
  const big = await fileDownloadInfo({ repo: 'org/tiny', hubUrl: hub.url, path: 'model.safetensors' });
  assert.equal(big?.size, 1_044_992);
  assert.equal(await fileDownloadInfo({ repo: 'org/tiny', hubUrl: hub.url, path: 'missing.bin' }), null);
});

test('downloadFile follows the CDN redirect and returns the bytes', async () => {
  const blob = await downloadFile({ repo: 'org/tiny', hubUrl: hub.url, path: 'model.safetensors' });
  const bytes = new Uint8Array(await blob!.arrayBuffer());
  assert.equal(createHash('sha256').update(bytes).digest('hex'), STORIES_SAFETENSORS_SHA256);
});

test('resolve answers carry the Hub headers; Range requests are honoured', async () => {
  const commit = hub.commitOf('org/tiny');
  const head = await fetch(`${hub.url}/org/tiny/resolve/main/model.safetensors`, { method: 'HEAD', redirect: 'manual' });
  assert.equal(head.status, 302);
  assert.equal(head.headers.get('x-repo-commit'), commit);
  assert.equal(head.headers.get('x-linked-etag'), `"${STORIES_SAFETENSORS_SHA256}"`);
  assert.equal(head.headers.get('x-linked-size'), '1044992');
  assert.notEqual(new URL(head.headers.get('location')!).origin, new URL(hub.url).origin, 'the CDN is another origin');

  const tail = await fetch(`${hub.url}/org/tiny/resolve/${commit}/sub/dir/notes.txt`, { headers: { range: 'bytes=-3' } });
  assert.equal(tail.status, 206);
  assert.equal(tail.headers.get('content-range'), 'bytes 3-5/6');
  assert.equal(await tail.text(), 'lo\n');
  const past = await fetch(`${hub.url}/org/tiny/resolve/${commit}/sub/dir/notes.txt`, { headers: { range: 'bytes=6-' } });
  assert.equal(past.status, 416);
  await past.body?.cancel();

  const missing = await fetch(`${hub.url}/org/tiny/resolve/main/nope.txt`);
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get('x-error-code'), 'EntryNotFound');
  await missing.body?.cancel();
});

test('API faults: a cut model-info answer fails the library mid-body; the next answer is whole', async () => {
  hub.faults.push({ kind: 'cut', on: 'api', endpoint: 'info', times: 1 });
  try {
    await assert.rejects(modelInfo({ name: 'org/tiny', hubUrl: hub.url, additionalFields: ['sha'] }));
    assert.equal(hub.stats.requests.at(-1)!.cut, true);
    assert.equal((await modelInfo({ name: 'org/tiny', hubUrl: hub.url, additionalFields: ['sha'] })).sha, hub.commitOf('org/tiny'));
  } finally {
    hub.faults.splice(0);
  }
});

test('errorHeaders: false leaves X-Error-Code and X-Error-Message off; the JSON body stays', async () => {
  const bare = await startHubServer({ repos: { 'org/tiny': { files: { 'a.json': '{}' } } }, errorHeaders: false });
  try {
    const res = await fetch(`${bare.url}/api/models/org/missing`);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('x-error-code'), null);
    assert.equal(res.headers.get('x-error-message'), null);
    assert.deepEqual(await res.json(), { error: 'Repository not found' });
  } finally {
    await bare.close();
  }
});
