// resolveHubModel against the loopback Hub serving the real stories260K repo.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { resolveHubModel } from '../../src/lock/resolve.js';
import { pullModel } from '../../src/hub/pull.js';
import { InputError, NetworkError } from '../../src/util/errors.js';
import { canonicalJson } from '../../src/util/json.js';
import { startHubServer, type HubServer } from '../support/hub-server.js';
import { PICKLE2, PICKLE4, onnxWithBinData, storedZip } from '../support/pickle-fixtures.js';
import { gzipSync } from 'node:zlib';
import { STORIES_HF, STORIES_SAFETENSORS_SHA256, TOKEN, OTHER_TOKEN, hubConfig, model, storiesFiles, tempDir } from '../support/hub-fixtures.js';

let hub: HubServer;
/** 3 MiB of tensor bytes behind a PyTorch-style ZIP's data.pkl: the lock must not download them to see it. */
const BIG_TENSORS = new Uint8Array(3 << 20);

before(async () => {
  const files = await storiesFiles();
  const { onnx, data } = await onnxWithBinData();
  hub = await startHubServer({
    repos: {
      'org/tiny': { files, tags: ['v1.0'] },
      'org/private': { files: { 'config.json': '{"p":1}' }, private: true, readers: [TOKEN] },
      'org/gated': { files: { 'config.json': '{"g":1}', 'model.safetensors': new Uint8Array(300) }, gated: true, readers: [TOKEN] },
      'org/pickles': { files: { 'config.json': '{}', 'pytorch_model.bin': new Uint8Array(64), 'model.safetensors': new Uint8Array(64) } },
      'org/nested': {
        files: Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`dir${i % 3}/sub/f${i}.json`, `{"i":${i}}`])),
      },
      'evil/escape': { files: { 'config.json': '{}', '../../outside.json': '{"pwned":true}' } },
      'org/renamed': {
        files: {
          'config.json': '{}',
          'model.joblib': PICKLE4,
          'weights.pth.tar': storedZip([['archive/data.pkl', PICKLE2], ['archive/data/0', BIG_TENSORS]]),
          'late/checkpoint.data': storedZip([['archive/data/0', BIG_TENSORS], ['archive/data.pkl', PICKLE2]]),
          'encoder.data': gzipSync(PICKLE4),
        },
        lfs: () => true,
      },
      'org/onnx-bin': { files: { 'config.json': '{}', 'onnx/model.onnx': onnx, 'onnx/model.bin': data, 'pytorch_model.bin': data } },
    },
    tokens: [TOKEN, OTHER_TOKEN],
    pageSize: 3,
  });
});
after(() => hub.close());

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('resolves main to the commit and pins every selected file with size and sha256', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  const entry = await resolveHubModel(model(), cfg);
  assert.equal(entry.source, 'hub');
  assert.equal(entry.repo, 'org/tiny');
  assert.equal(entry.revision, 'main');
  assert.equal(entry.commit, hub.commitOf('org/tiny'));
  assert.deepEqual(
    entry.files.map((f) => f.path),
    ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.model', 'tokenizer_config.json'],
  );
  for (const f of entry.files) {
    const bytes = await readFile(join(STORIES_HF, f.path));
    assert.equal(f.size, bytes.length, f.path);
    assert.equal(f.sha256, sha256(bytes), f.path);
  }
  const weights = entry.files.find((f) => f.path === 'model.safetensors')!;
  assert.equal(weights.sha256, STORIES_SAFETENSORS_SHA256);
  assert.equal(weights.lfs, true);
  assert.equal(entry.files.find((f) => f.path === 'config.json')!.lfs, false);
});

test('resolving twice gives identical bytes, with a warm or a cold cache', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  const a = canonicalJson(await resolveHubModel(model(), cfg));
  const b = canonicalJson(await resolveHubModel(model(), cfg));
  const c = canonicalJson(await resolveHubModel(model(), hubConfig(hub.url, await tempDir(t))));
  assert.equal(a, b);
  assert.equal(a, c);
});

test('small files fetched while locking are verified, cached and not fetched again by pull', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  const entry = await resolveHubModel(model(), cfg);
  hub.stats.reset();
  const result = await pullModel({ ...entry, fragment: 'f' }, cfg);
  assert.equal(hub.stats.bytesFor('config.json'), 0);
  assert.equal(result.downloadedBytes, entry.files.filter((f) => f.lfs).reduce((n, f) => n + f.size, 0));
});

test('a tag and a commit sha resolve to the same commit; an unknown revision is named', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  const commit = hub.commitOf('org/tiny');
  assert.equal((await resolveHubModel(model({ revision: 'v1.0' }), cfg)).commit, commit);
  const bySha = await resolveHubModel(model({ revision: commit }), cfg);
  assert.equal(bySha.commit, commit);
  assert.equal(bySha.revision, commit);
  await assert.rejects(resolveHubModel(model({ revision: 'no-such-branch' }), cfg), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.field, 'revision');
    assert.match(e.message, /revision "no-such-branch" not found in org\/tiny/);
    return true;
  });
});

test('an unknown repo: without a token it may also be private or gated (the Hub will not say); with one, it does not exist for that account', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  await assert.rejects(resolveHubModel(model({ repo: 'org/missing' }), cfg), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.field, 'repo');
    assert.equal(e.status, 401);
    assert.match(e.message, /repo org\/missing does not exist, or it is private\/gated and needs a token: set HF_TOKEN/);
    assert.match(e.hint ?? '', /settings\/tokens/);
    return true;
  });
  await assert.rejects(resolveHubModel(model({ repo: 'org/missing' }), hubConfig(hub.url, await tempDir(t), { token: TOKEN })), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.status, 404);
    assert.match(e.message, /repo org\/missing does not exist, or it is private and the HF_TOKEN account cannot read it/);
    assert.doesNotMatch(e.message, /rejected/);
    return true;
  });
});

test('globs select files; nothing matching is an error naming the field', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  const only = await resolveHubModel(model({ files: ['tokenizer*'] }), cfg);
  assert.deepEqual(only.files.map((f) => f.path), ['tokenizer.model', 'tokenizer_config.json']);
  await assert.rejects(resolveHubModel(model({ files: ['*.gguf'] }), cfg), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.field, 'models.tiny.files');
    assert.match(e.message, /no file in org\/tiny@main matches \["\*\.gguf"\]/);
    return true;
  });
});

test('paged tree listings are followed to the end (Link rel=next)', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  const entry = await resolveHubModel(model({ repo: 'org/nested', files: ['**/*.json'] }), cfg);
  assert.equal(entry.files.length, 7);
  assert.deepEqual(entry.files.map((f) => f.path), [...entry.files.map((f) => f.path)].sort());
  assert.ok(hub.stats.requests.filter((r) => r.url.includes('/tree/') && r.url.includes('cursor=')).length >= 2);
});

test('pickle files are refused unless allow_pickle names them', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  await assert.rejects(resolveHubModel(model({ repo: 'org/pickles', files: ['*'] }), cfg), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.field, 'models.tiny.allow_pickle');
    assert.match(e.message, /pytorch_model\.bin .*pickle/);
    return true;
  });
  const allowed = await resolveHubModel(model({ repo: 'org/pickles', files: ['*'], allow_pickle: ['pytorch_model.bin'] }), cfg);
  assert.deepEqual(allowed.files.map((f) => f.path), ['config.json', 'model.safetensors', 'pytorch_model.bin']);
  const safeOnly = await resolveHubModel(model({ repo: 'org/pickles', files: ['*.safetensors', '*.json'] }), cfg);
  assert.deepEqual(safeOnly.files.map((f) => f.path), ['config.json', 'model.safetensors']);
});

test('Hub repos: pickles are found by their bytes through ranged reads, without downloading the weights', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  const cases: [string, RegExp][] = [
    ['model.joblib', /Python pickle \(protocol 4\)/],
    ['weights.pth.tar', /ZIP archive holding a pickle \(archive\/data\.pkl\)/],
    ['late/checkpoint.data', /ZIP archive holding a pickle \(archive\/data\.pkl\)/],
    ['encoder.data', /gzip-compressed/],
  ];
  hub.stats.reset();
  for (const [path, reason] of cases) {
    await assert.rejects(resolveHubModel(model({ repo: 'org/renamed', files: ['config.json', path] }), cfg), (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.equal(e.field, 'models.tiny.allow_pickle');
      assert.ok(e.message.includes(`model tiny: ${path} in org/renamed can run code when loaded`), e.message);
      assert.match(e.message, reason);
      return true;
    });
  }
  for (const path of ['weights.pth.tar', 'late/checkpoint.data']) {
    assert.ok(hub.stats.bytesFor(path) < 200_000, `${path}: ${hub.stats.bytesFor(path)} bytes read of ${BIG_TENSORS.length}+`);
  }
  const allowed = await resolveHubModel(model({ repo: 'org/renamed', files: ['**'], allow_pickle: cases.map(([p]) => p) }), cfg);
  assert.equal(allowed.files.length, 5);
});

test('Hub repos: external data of an ONNX model named *.bin is accepted; a *.bin nothing references is refused', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  const entry = await resolveHubModel(model({ repo: 'org/onnx-bin', files: ['onnx/*', 'config.json'] }), cfg);
  assert.deepEqual(entry.files.map((f) => f.path), ['config.json', 'onnx/model.bin', 'onnx/model.onnx']);
  await assert.rejects(resolveHubModel(model({ repo: 'org/onnx-bin', files: ['**'] }), cfg), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, /pytorch_model\.bin in org\/onnx-bin can run code when loaded: its name is one that pickle loaders/);
    return true;
  });
  // Offline, from the cache once the files are pulled: the same decision.
  await pullModel({ ...entry, fragment: 'f' }, cfg);
  const offline = await resolveHubModel(model({ repo: 'org/onnx-bin', revision: entry.commit, files: ['onnx/*', 'config.json'] }), { ...cfg, offline: true });
  assert.deepEqual(offline.files, entry.files);
});

test('a listed file name that would escape the repo folder is refused', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  await assert.rejects(resolveHubModel(model({ repo: 'evil/escape', files: ['**'] }), cfg), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /unsafe to write: "\.\.\/\.\.\/outside\.json"/);
    return true;
  });
});

test('private repos: 401 without a token says so; the right token works', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(resolveHubModel(model({ repo: 'org/private', files: ['*'] }), hubConfig(hub.url, dir)), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.status, 401);
    assert.match(e.message, /repo org\/private does not exist, or it is private\/gated and needs a token: set HF_TOKEN/);
    assert.match(e.hint ?? '', /set HF_TOKEN to a read token/);
    return true;
  });
  const entry = await resolveHubModel(model({ repo: 'org/private', files: ['*'] }), hubConfig(hub.url, dir, { token: TOKEN }));
  assert.equal(entry.files.length, 1);
  const last = hub.stats.requests.at(-1)!;
  assert.ok(last.authorization, 'the token goes to the Hub itself');
  await pullModel({ ...entry, fragment: 'f' }, hubConfig(hub.url, dir, { token: TOKEN }));
  assert.ok(!JSON.stringify(entry).includes(TOKEN), 'not in the lock entry');
  const { spawnSync } = await import('node:child_process');
  const grep = spawnSync('grep', ['-rl', TOKEN, dir], { encoding: 'utf8' });
  assert.equal(grep.status, 1, `the token is written nowhere in the cache: ${grep.stdout}`);
});

test('a token the Hub does not accept is reported without being shown', async (t) => {
  const bad = 'hf_notKnownToTheServer99';
  await assert.rejects(resolveHubModel(model(), hubConfig(hub.url, await tempDir(t), { token: bad })), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.status, 401);
    assert.equal(e.field, 'HF_TOKEN');
    assert.match(e.message, /^the Hub rejected HF_TOKEN \(invalid or expired\): /);
    assert.doesNotMatch(e.message, /private|gated|no access/);
    assert.match(e.hint ?? '', /new .*token .*settings\/tokens/);
    assert.ok(!JSON.stringify({ ...e.toJSON(), url: e.url, stack: e.stack }).includes(bad));
    return true;
  });
});

test('gated repos: locking and pulling without access say gated (401 anonymous, 403 wrong account)', async (t) => {
  const dir = await tempDir(t);
  const spec = model({ repo: 'org/gated', files: ['*.safetensors'] });
  // Locking reads the first bytes of every file (pickles are refused by what they are), so it needs access too.
  await assert.rejects(resolveHubModel(spec, hubConfig(hub.url, dir)), (e: unknown) => {
    assert.ok(e instanceof NetworkError, String(e));
    assert.equal(e.status, 401);
    assert.match(e.message, /org\/gated is gated: accept the conditions at http:\/\/127\.0\.0\.1:\d+\/org\/gated and set HF_TOKEN/);
    return true;
  });
  const entry = await resolveHubModel(spec, hubConfig(hub.url, await tempDir(t), { token: TOKEN }));
  for (const [token, status] of [[undefined, 401], [OTHER_TOKEN, 403]] as const) {
    await assert.rejects(pullModel({ ...entry, fragment: 'f' }, hubConfig(hub.url, dir, token ? { token } : {})), (e: unknown) => {
      assert.ok(e instanceof NetworkError, String(e));
      assert.equal(e.status, status);
      assert.match(e.message, /org\/gated is gated: accept the conditions at http:\/\/127\.0\.0\.1:\d+\/org\/gated/);
      if (token) assert.doesNotMatch(e.message, /set HF_TOKEN/);
      else assert.match(e.message, /and set HF_TOKEN/);
      return true;
    });
  }
  const ok = await pullModel({ ...entry, fragment: 'f' }, hubConfig(hub.url, dir, { token: TOKEN }));
  assert.equal((await readFile(join(ok.snapshotDir, 'model.safetensors'))).length, 300);
  const cdn = hub.stats.requests.filter((r) => r.host === 'cdn');
  assert.ok(cdn.length > 0 && cdn.every((r) => !r.authorization), 'the token never reaches the CDN origin');
});

test('without X-Error-Code headers, the status and whether a token was sent still tell the cases apart', async (t) => {
  const own = await startHubServer({
    repos: {
      'org/tiny': { files: { 'config.json': '{}', 'model.safetensors': new Uint8Array(64) } },
      'org/private': { files: { 'config.json': '{"p":1}' }, private: true, readers: [TOKEN] },
      'org/gated': { files: { 'model.safetensors': new Uint8Array(300) }, gated: true, readers: [TOKEN] },
    },
    tokens: [TOKEN, OTHER_TOKEN],
    errorHeaders: false,
  });
  t.after(() => own.close());
  const dir = await tempDir(t);
  const cfg = (token?: string) => hubConfig(own.url, dir, token ? { token } : {});
  const refused = async (p: Promise<unknown>, status: number, message: RegExp) =>
    assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof NetworkError, String(e));
      assert.equal(e.status, status);
      assert.match(e.message, message);
      return true;
    });
  const rejected = /^the Hub rejected HF_TOKEN \(invalid or expired\)/;
  await refused(resolveHubModel(model({ files: ['*'] }), cfg('hf_notKnownToTheServer99')), 401, rejected);
  await refused(resolveHubModel(model({ repo: 'org/missing' }), cfg()), 401, /repo org\/missing does not exist, or it is private\/gated and needs a token: set HF_TOKEN/);
  await refused(resolveHubModel(model({ repo: 'org/private', files: ['*'] }), cfg()), 401, /repo org\/private does not exist, or it is private\/gated and needs a token/);
  await refused(resolveHubModel(model({ repo: 'org/missing' }), cfg(OTHER_TOKEN)), 404, /repo org\/missing does not exist, or it is private and the HF_TOKEN account cannot read it/);
  // Downloads: the resolve endpoint refuses in the same ways.
  const tiny = { ...(await resolveHubModel(model({ files: ['*'] }), cfg())), fragment: 'f' };
  await refused(pullModel(tiny, cfg('hf_notKnownToTheServer99')), 401, rejected);
  // (Locking reads the files' first bytes, so it needs access to the gated repo.)
  const gated = { ...(await resolveHubModel(model({ repo: 'org/gated', files: ['*'] }), cfg(TOKEN))), fragment: 'f' };
  await refused(pullModel(gated, cfg(OTHER_TOKEN)), 403, /org\/gated is gated: accept the conditions at http:\/\/127\.0\.0\.1:\d+\/org\/gated/);
  await refused(pullModel(gated, cfg()), 401, /org\/gated is gated: accept the conditions at http:\/\/127\.0\.0\.1:\d+\/org\/gated and set HF_TOKEN/);
});

test('429 with Retry-After and 503 on the API are retried, then succeed', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  hub.faults.push({ kind: 'status', on: 'api', status: 429, retryAfter: 0, times: 2 }, { kind: 'status', on: 'api', status: 503, times: 1 });
  t.after(() => hub.faults.splice(0));
  const entry = await resolveHubModel(model({ files: ['config.json'] }), cfg);
  assert.equal(entry.files.length, 1);
  assert.equal(hub.faults.reduce((n, f) => n + (f.times ?? 0), 0), 0, 'every injected failure was met');
});

test('a Hub API answer slower than the timeout is retried', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t), { timeoutMs: 300 });
  hub.faults.push({ kind: 'slow', on: 'api', delayMs: 1000, times: 1 });
  t.after(() => hub.faults.splice(0));
  hub.stats.reset();
  const entry = await resolveHubModel(model({ files: ['config.json'] }), cfg);
  assert.equal(entry.commit, hub.commitOf('org/tiny'));
  assert.equal(hub.faults[0]!.times, 0);
  assert.equal(hub.stats.requests.filter((r) => r.url.includes('/revision/main')).length, 2, 'the timed-out call was made again');
});

test('offline: resolves from the cache with no request; fails clearly when the revision is not cached', async (t) => {
  const dir = await tempDir(t);
  const online = await resolveHubModel(model(), hubConfig(hub.url, dir));
  await pullModel({ ...online, fragment: 'f' }, hubConfig(hub.url, dir));
  hub.stats.reset();
  const offline = await resolveHubModel(model(), hubConfig('http://127.0.0.1:9', dir, { offline: true }));
  assert.equal(canonicalJson(offline), canonicalJson(online));
  const bySha = await resolveHubModel(model({ revision: online.commit }), hubConfig('http://127.0.0.1:9', dir, { offline: true }));
  assert.deepEqual(bySha.files, online.files);
  assert.equal(hub.stats.requests.length, 0);
  await assert.rejects(resolveHubModel(model({ revision: 'v2' }), hubConfig(hub.url, dir, { offline: true })), (e: unknown) => {
    assert.ok(e instanceof NetworkError);
    assert.equal(e.field, 'HF_HUB_OFFLINE');
    assert.match(e.message, /offline mode \(HF_HUB_OFFLINE=1\): org\/tiny@v2 is not in the Hugging Face cache/);
    return true;
  });
  assert.equal(hub.stats.requests.length, 0);
});

test('offline: a snapshot entry linking outside the repo folder is not trusted', async (t) => {
  const dir = await tempDir(t);
  const online = await resolveHubModel(model({ files: ['config.json'] }), hubConfig(hub.url, dir));
  await pullModel({ ...online, fragment: 'f' }, hubConfig(hub.url, dir));
  const { symlink } = await import('node:fs/promises');
  await symlink('/etc/hostname', join(dir, 'models--org--tiny', 'snapshots', online.commit, 'stolen.json'));
  const offline = await resolveHubModel(model({ files: ['*.json'] }), hubConfig(hub.url, dir, { offline: true }));
  assert.deepEqual(offline.files.map((f) => f.path), ['config.json']);
});

test('a server that is not a Hub gets a NetworkError, not a crash', async (t) => {
  const { createServer } = await import('node:http');
  const srv = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(req.url!.includes('/tree/') ? '{"not":"an array"}' : JSON.stringify({ sha: 'a'.repeat(40) }));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());
  const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  await assert.rejects(resolveHubModel(model(), hubConfig(url, await tempDir(t))), (e: unknown) => {
    assert.ok(e instanceof NetworkError, String(e));
    assert.match(e.message, /sent an answer about org\/tiny that could not be read/);
    return true;
  });
});

test('after a push, main resolves to the new commit while the old lock still pulls its own bytes', async (t) => {
  const own = await startHubServer({ repos: { 'org/moving': { files: { 'config.json': '{"v":1}', 'model.safetensors': new Uint8Array(2048).fill(1) } } } });
  t.after(() => own.close());
  const dir = await tempDir(t);
  const cfg = hubConfig(own.url, dir);
  const spec = model({ repo: 'org/moving', files: ['*'] });
  const v1 = await resolveHubModel(spec, cfg);
  await own.push('org/moving', { files: { 'config.json': '{"v":2}', 'model.safetensors': new Uint8Array(2048).fill(2) } });
  const v2 = await resolveHubModel(spec, cfg);
  assert.notEqual(v2.commit, v1.commit);
  assert.notEqual(v2.files[1]!.sha256, v1.files[1]!.sha256);
  const old = await pullModel({ ...v1, fragment: 'f' }, cfg);
  assert.equal(await readFile(join(old.snapshotDir, 'config.json'), 'utf8'), '{"v":1}');
  assert.equal(await readFile(join(dir, 'models--org--moving', 'refs', 'main'), 'utf8'), v1.commit);
  await pullModel({ ...v2, fragment: 'f' }, cfg);
  assert.equal(await readFile(join(dir, 'models--org--moving', 'refs', 'main'), 'utf8'), v2.commit);
});

test('a Hub API answer cut mid-body (model info, then a tree page) is asked again', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t));
  hub.faults.push({ kind: 'cut', on: 'api', endpoint: 'info', times: 1 }, { kind: 'cut', on: 'api', endpoint: 'tree', times: 2 });
  t.after(() => hub.faults.splice(0));
  hub.stats.reset();
  const entry = await resolveHubModel(model({ repo: 'org/nested', files: ['**/*.json'] }), cfg);
  assert.equal(entry.files.length, 7);
  assert.equal(hub.faults.reduce((n, f) => n + (f.times ?? 0), 0), 0, 'every injected cut was met');
  assert.equal(hub.stats.requests.filter((r) => r.cut).length, 3);
});

test('a Hub API answer that stalls mid-body is given up after the stall timeout and asked again', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t), { timeoutMs: 300 });
  hub.faults.push({ kind: 'stall', on: 'api', endpoint: 'tree', times: 1 });
  t.after(() => hub.faults.splice(0));
  hub.stats.reset();
  const started = Date.now();
  const entry = await resolveHubModel(model({ files: ['config.json'] }), cfg);
  assert.equal(entry.files.length, 1);
  assert.equal(hub.faults[0]!.times, 0);
  assert.ok(Date.now() - started < 4_000, 'the stall was noticed by the stall timeout, not waited out');
});

test('a Hub API answer cut on every attempt ends in a NetworkError naming the repo, after the retries', async (t) => {
  const cfg = hubConfig(hub.url, await tempDir(t), { retries: 2 });
  hub.faults.push({ kind: 'cut', on: 'api', endpoint: 'info' });
  t.after(() => hub.faults.splice(0));
  hub.stats.reset();
  await assert.rejects(resolveHubModel(model(), cfg), (e: unknown) => {
    assert.ok(e instanceof NetworkError, String(e));
    assert.match(e.message, /org\/tiny/);
    return true;
  });
  assert.equal(hub.stats.requests.filter((r) => r.cut).length, 3, 'the first attempt and 2 retries');
});
