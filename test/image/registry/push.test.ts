// Pushing to a real registry (Debian's docker-registry on loopback), pulling back, tags, mounts,
// retries, and registries that refuse: a clear error and no tag (the manifest goes last).
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  appendLayers,
  dirLayer,
  epochToRfc3339,
  imageAnnotations,
  listTags,
  pullImage,
  pushImage,
  readOciLayout,
  releaseTags,
  scratchImage,
  writeOciLayout,
  type ImageValue,
  type PushEvent,
} from '../../../src/image/oci/index.js';
import { InputError, IntegrityError, NetworkError } from '../../../src/util/errors.js';
import { MODELS, modelFolder, run, skopeoInspect, skopeoRaw, tempDir } from '../../support/oci-fixtures.js';
import { startFaultyProxy, startRegistry, TEST_USER, type TestRegistry } from '../../support/registry.js';

const EPOCH = 1_700_000_000;
let registry: TestRegistry;
const cleanup: string[] = [];
before(async () => {
  registry = await startRegistry();
});
after(async () => {
  await registry?.close();
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});

async function modelImage(compression: 'none' | 'gzip' = 'none'): Promise<ImageValue> {
  const vad = await modelFolder(join(MODELS, 'silero-vad'), 'vad');
  const stories = await modelFolder(join(MODELS, 'stories260K/hf'), 'stories');
  cleanup.push(vad, stories);
  const layers = [
    await dirLayer(vad, 'app/models/vad', { compression, epoch: EPOCH }),
    await dirLayer(stories, 'app/models/stories', { compression, epoch: EPOCH }),
  ];
  return appendLayers(scratchImage(), layers, { created: epochToRfc3339(EPOCH), annotations: imageAnnotations({ epoch: EPOCH, version: '1.2.0' }) });
}

describe('pushImage', () => {
  it('pushes blobs then tags; the pulled image has the same digest; a second push skips every blob', async () => {
    const img = await modelImage();
    const tags = releaseTags({ version: '1.2.0', target: 'cpu', modelsDigest: 'sha256:' + 'ab'.repeat(32) });
    const events: PushEvent[] = [];
    const ref = `${registry.host}/bake/models`;
    const res = await pushImage(img, ref, { tags, chunkSize: 1 << 20, onEvent: (e) => events.push(e) });
    assert.equal(res.pushedBlobs, 3, 'two layers and the config');
    assert.equal(res.skippedBlobs, 0);
    const manifestEvents = events.filter((e) => e.type === 'manifest-put');
    assert.equal(manifestEvents.length, 3);
    const lastBlob = events.map((e) => e.type).lastIndexOf('blob-uploaded');
    const firstManifest = events.findIndex((e) => e.type === 'manifest-put');
    assert.ok(lastBlob < firstManifest, 'every blob before any manifest');
    assert.ok(events.some((e) => e.type === 'blob-progress' && e.bytes! > 0 && e.bytes! < img.layers[0]!.size), 'big layers go in chunks');

    assert.deepEqual(await listTags(ref), [...tags].sort());
    // An independent client sees the same digest and layers.
    const inspected = await skopeoInspect(`docker://${ref}:1.2.0-cpu`);
    assert.equal(inspected.Digest, res.manifestDigest);
    assert.deepEqual(inspected.Layers, img.layers.map((l) => l.digest));

    const pulled = await pullImage(`${ref}:1.2.0`);
    assert.equal(pulled.source?.digest, res.manifestDigest);
    const out = join(await tempDir('pulled'), 'oci');
    cleanup.push(out);
    const written = await writeOciLayout(pulled, out, { tags: ['back'] });
    assert.equal(written.manifestDigest, res.manifestDigest, 'pull + write reproduces the pushed manifest');
    assert.equal((await skopeoInspect(`oci:${out}:back`)).Digest, res.manifestDigest);

    const again = await pushImage(img, ref, { tags: ['again'] });
    assert.equal(again.pushedBlobs, 0);
    assert.equal(again.skippedBlobs, 3);
    assert.equal(again.manifestDigest, res.manifestDigest);
  });

  it('mounts base layers from a sibling repository instead of uploading them', async () => {
    const img = await modelImage('gzip');
    await pushImage(img, `${registry.host}/bake/base`, { tags: ['1'] });
    const base = await pullImage(`${registry.host}/bake/base:1`);
    const extra = await modelFolder(join(MODELS, 'stories260K/llama2c'), 'llama2c');
    cleanup.push(extra);
    const top = appendLayers(base, [await dirLayer(extra, 'app/models/llama2c', { compression: 'none', epoch: EPOCH })], { created: epochToRfc3339(EPOCH) });
    assert.equal(top.annotations['org.opencontainers.image.base.name'], `${registry.host}/bake/base:1`);
    const events: PushEvent[] = [];
    const res = await pushImage(top, `${registry.host}/bake/app`, { tags: ['1'], onEvent: (e) => events.push(e) });
    assert.equal(res.mountedBlobs, 2, 'both base layers mounted');
    assert.equal(res.pushedBlobs, 2, 'the new layer and the config uploaded');
    const inspected = await skopeoInspect(`docker://${registry.host}/bake/app:1`);
    assert.equal(inspected.Layers.length, 3);
    // skopeo can copy it out whole, unchanged: every blob really is in the new repository.
    // (--preserve-digests: skopeo 1.9 otherwise gzips uncompressed layers on the way into oci:.)
    const out = join(await tempDir('copy'), 'oci');
    cleanup.push(out);
    await run('skopeo', ['copy', '--preserve-digests', '--src-tls-verify=false', `docker://${registry.host}/bake/app:1`, `oci:${out}:x`]);
    assert.equal((await skopeoInspect(`oci:${out}:x`)).Digest, res.manifestDigest);
  });

  it('builds on a Docker v2s2 base pushed by skopeo, and on a multi-platform index', async () => {
    // skopeo publishes the base as Docker schema 2 (docker media types, gzip layers).
    const img = await modelImage('gzip');
    const layout = join(await tempDir('v2s2'), 'oci');
    cleanup.push(layout);
    await writeOciLayout(img, layout, { tags: ['b'] });
    await run('skopeo', ['copy', '--format', 'v2s2', '--dest-tls-verify=false', `oci:${layout}:b`, `docker://${registry.host}/bake/v2s2:b`]);
    const raw = (await skopeoRaw(`docker://${registry.host}/bake/v2s2:b`)) as { mediaType: string };
    assert.equal(raw.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    const base = await pullImage(`${registry.host}/bake/v2s2:b`);
    const extra = await modelFolder(join(MODELS, 'stories260K/llama2c'), 'llama2c');
    cleanup.push(extra);
    const top = appendLayers(base, [await dirLayer(extra, 'app/models/llama2c', { compression: 'none', epoch: EPOCH })]);
    const res = await pushImage(top, `${registry.host}/bake/on-v2s2`, { tags: ['1'] });
    const pushed = (await skopeoRaw(`docker://${registry.host}/bake/on-v2s2:1`)) as { mediaType: string; layers: { mediaType: string }[] };
    assert.equal(pushed.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.deepEqual(pushed.layers.map((l) => l.mediaType), ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar']);
    assert.equal(res.mountedBlobs, 2);

    // An index naming an arm64 and an amd64 image: pullImage picks linux/amd64 unless told otherwise.
    const amd = await pushImage(img, `${registry.host}/bake/multi`, { tags: ['amd64'] });
    const armImg = appendLayers(scratchImage({ architecture: 'arm64' }), [img.layers[0]!]);
    const arm = await pushImage(armImg, `${registry.host}/bake/multi`, { tags: ['arm64'] });
    const manifestSize = async (tag: string) => Number((await fetch(`${registry.url}/v2/bake/multi/manifests/${tag}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).headers.get('content-length'));
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: arm.manifestDigest, size: await manifestSize('arm64'), platform: { os: 'linux', architecture: 'arm64' } },
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: amd.manifestDigest, size: await manifestSize('amd64'), platform: { os: 'linux', architecture: 'amd64' } },
      ],
    };
    const put = await fetch(`${registry.url}/v2/bake/multi/manifests/all`, { method: 'PUT', headers: { 'content-type': index.mediaType }, body: JSON.stringify(index) });
    assert.equal(put.status, 201);
    assert.equal((await pullImage(`${registry.host}/bake/multi:all`)).source?.digest, amd.manifestDigest);
    const armPulled = await pullImage(`${registry.host}/bake/multi:all`, { platform: { os: 'linux', architecture: 'arm64' } });
    assert.equal(armPulled.config.architecture, 'arm64');
    // The same index copied into a local layout (skopeo --all): readOciLayout picks the same way.
    const multiLayout = join(await tempDir('multi'), 'oci');
    cleanup.push(multiLayout);
    await run('skopeo', ['copy', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${registry.host}/bake/multi:all`, `oci:${multiLayout}:all`]);
    assert.equal((await readOciLayout(multiLayout, 'all')).source?.digest, amd.manifestDigest);
    assert.equal((await readOciLayout(multiLayout, 'all', { platform: { os: 'linux', architecture: 'arm64' } })).source?.digest, arm.manifestDigest);
    await assert.rejects(pullImage(`${registry.host}/bake/multi:all`, { platform: { os: 'linux', architecture: 's390x' } }), (e: unknown) => e instanceof InputError && /linux\/arm64, linux\/amd64/.test(e.expected ?? ''));
  });

  it('retries transient failures and resumes a chunked upload', async () => {
    const img = await modelImage();
    // A PATCH whose reply is lost after the registry stored it (the client must ask where it stands),
    // a PATCH refused with 503, a PATCH whose connection drops, and a 503 on a HEAD.
    let patches = 0;
    const proxy = await startFaultyProxy(registry.host, (method, _path, n) => {
      if (method === 'PATCH') patches++;
      if (method === 'PATCH' && n === 3) return { after: 502 };
      if (method === 'PATCH' && n === 5) return 503;
      if (method === 'PATCH' && n === 7) return 'drop';
      if (method === 'HEAD' && n === 1) return 503;
      return undefined;
    });
    try {
      const res = await pushImage(img, `${proxy.host}/bake/flaky`, { tags: ['ok'], chunkSize: 512 * 1024, retryDelayMs: 5 });
      assert.equal(res.pushedBlobs, 3);
      assert.ok(patches > 7);
      assert.ok(proxy.seen.filter((x) => x.startsWith('GET /v2/bake/flaky/blobs/uploads/')).length >= 3, 'asked the upload status after each failed PATCH');
      assert.deepEqual(await listTags(`${registry.host}/bake/flaky`), ['ok']);
      assert.equal((await skopeoInspect(`docker://${registry.host}/bake/flaky:ok`)).Digest, res.manifestDigest);
    } finally {
      await proxy.close();
    }
  });

  it('a registry that refuses uploads: a clear error and no tag', async () => {
    const img = await modelImage();
    const proxy = await startFaultyProxy(registry.host, (method, path) => (method === 'PATCH' || (method === 'PUT' && path.includes('/blobs/')) ? 403 : undefined));
    try {
      await assert.rejects(pushImage(img, `${proxy.host}/bake/refused`, { tags: ['nope'], chunkSize: 1 << 20, retryDelayMs: 5 }), (e: unknown) => {
        assert.ok(e instanceof NetworkError);
        assert.equal(e.status, 403);
        assert.match(e.message, /uploading/);
        assert.match(e.message, /TEST_FAULT/);
        assert.match(e.hint ?? '', /refused access/);
        return true;
      });
      assert.ok(!proxy.seen.some((s) => s.startsWith('PUT') && s.includes('/manifests/')), 'no manifest was sent');
      assert.deepEqual(await listTags(`${registry.host}/bake/refused`), []);
    } finally {
      await proxy.close();
    }
  });

  it('a read-only registry: a clear error naming the registry, nothing tagged', async () => {
    const ro = await startRegistry({ readonly: true });
    try {
      const img = await modelImage();
      await assert.rejects(pushImage(img, `${ro.host}/bake/ro`, { tags: ['x'], retryDelayMs: 5 }), (e: unknown) => {
        assert.ok(e instanceof NetworkError);
        assert.ok(e.message.includes(ro.host), e.message);
        assert.equal(e.status, 405);
        return true;
      });
      assert.deepEqual(await listTags(`${ro.host}/bake/ro`), []);
    } finally {
      await ro.close();
    }
  });

  it('pushes with credentials to a registry that asks for them; wrong ones get a clear 401', async () => {
    const locked = await startRegistry({ htpasswd: true });
    try {
      const img = await modelImage();
      const ref = `${locked.host}/bake/private`;
      const res = await pushImage(img, ref, { tags: ['1'], auth: TEST_USER });
      assert.equal(res.pushedBlobs, 3);
      assert.deepEqual(await listTags(ref, { auth: TEST_USER }), ['1']);
      assert.equal((await pullImage(`${ref}:1`, { auth: TEST_USER })).source?.digest, res.manifestDigest);
      for (const auth of [undefined, { username: 'bake', password: 'wrong' }]) {
        await assert.rejects(pushImage(img, ref, { tags: ['2'], ...(auth ? { auth } : {}) }), (e: unknown) => {
          assert.ok(e instanceof NetworkError);
          assert.equal(e.status, 401);
          assert.match(e.hint ?? '', /credentials/);
          return true;
        });
      }
      assert.deepEqual(await listTags(ref, { auth: TEST_USER }), ['1']);
    } finally {
      await locked.close();
    }
  });

  it('a layer whose bytes are not what it claims: IntegrityError, nothing tagged', async () => {
    const img = await modelImage();
    for (const [name, open] of [
      ['same size, other bytes', async () => {
        const { Readable } = await import('node:stream');
        const real = await img.layers[0]!.open();
        let flipped = false;
        return Readable.from((async function* () {
          for await (const c of real as AsyncIterable<Buffer>) {
            if (!flipped && c.length > 1000) { c[600] ^= 1; flipped = true; }
            yield c;
          }
        })());
      }],
      ['shorter', async () => img.layers[1]!.open()],
    ] as const) {
      const lying = { ...img, layers: [{ ...img.layers[0]!, verifiedFile: undefined, open }, img.layers[1]!] };
      await assert.rejects(pushImage(lying, `${registry.host}/bake/lying`, { tags: ['x'], chunkSize: 1 << 20 }), IntegrityError, name);
    }
    assert.deepEqual(await listTags(`${registry.host}/bake/lying`), []);
  });

  it('token auth (the Bearer flow of Docker Hub and GHCR): push, mount, pull with credentials; none: 401', async () => {
    const locked = await startRegistry({ tokenAuth: true });
    try {
      const img = await modelImage('gzip');
      const res = await pushImage(img, `${locked.host}/bake/tok-base`, { tags: ['1'], auth: TEST_USER });
      assert.equal(res.pushedBlobs, 3);
      const base = await pullImage(`${locked.host}/bake/tok-base:1`, { auth: TEST_USER });
      const extra = await modelFolder(join(MODELS, 'stories260K/llama2c'), 'llama2c');
      cleanup.push(extra);
      const top = appendLayers(base, [await dirLayer(extra, 'app/models/llama2c', { compression: 'none', epoch: EPOCH })]);
      const app = await pushImage(top, `${locked.host}/bake/tok-app`, { tags: ['1'], auth: TEST_USER });
      assert.equal(app.mountedBlobs, 2, 'the mount asked for a token covering both repositories');
      assert.deepEqual(await listTags(`${locked.host}/bake/tok-app`, { auth: TEST_USER }), ['1']);
      await assert.rejects(pushImage(img, `${locked.host}/bake/tok-anon`, { tags: ['1'] }), (e: unknown) => e instanceof NetworkError && e.status === 401);
    } finally {
      await locked.close();
    }
  });

  it('an unreachable registry and bad references fail with typed errors', async () => {
    const img = await modelImage();
    await assert.rejects(pushImage(img, '127.0.0.1:1/bake/x', { tags: ['t'], retries: 1, retryDelayMs: 5 }), (e: unknown) => e instanceof NetworkError && /cannot reach/.test(e.message));
    await assert.rejects(pushImage(img, 'bake/x', { tags: ['t'] }), InputError);
    await assert.rejects(pushImage(img, `${registry.host}/Bake/X`, { tags: ['t'] }), InputError);
    await assert.rejects(pushImage(img, `${registry.host}/bake/x`, { tags: [] }), InputError);
    await assert.rejects(pushImage(img, `${registry.host}/bake/x`, { tags: ['-bad'] }), InputError);
    await assert.rejects(pullImage(`${registry.host}/bake/none:missing`, { retries: 0 }), (e: unknown) => e instanceof NetworkError && e.status === 404);
  });
});

describe('releaseTags', () => {
  it('gives version-target, version and a models digest tag', () => {
    assert.deepEqual(releaseTags({ version: '1.2.0', target: 'cuda', modelsDigest: 'sha256:0123456789abcdef' + '0'.repeat(48) }), ['1.2.0-cuda', '1.2.0', 'models-0123456789ab']);
    assert.deepEqual(releaseTags({ version: '1.2.0+build.5', target: 'cpu', modelsDigest: 'f'.repeat(64) }), ['1.2.0_build.5-cpu', '1.2.0_build.5', 'models-ffffffffffff']);
    assert.throws(() => releaseTags({ version: 'v 1', target: 'cpu', modelsDigest: 'f'.repeat(64) }), InputError);
    assert.throws(() => releaseTags({ version: '1', target: 'cpu', modelsDigest: 'nothex' }), InputError);
  });
});
