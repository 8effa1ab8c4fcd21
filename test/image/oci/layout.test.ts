// Daemonless OCI output: deterministic layers, one digest for two builds, and independent tools
// (skopeo, umoci) agreeing with what we wrote.
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile, appendFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import tar from 'tar-stream';
import { createHash } from 'node:crypto';
import {
  appendLayers,
  dirLayer,
  imageAnnotations,
  MediaType,
  modelLayerAnnotations,
  readOciLayout,
  scratchImage,
  withLayerAnnotations,
  writeOciLayout,
  epochToRfc3339,
  type ImageValue,
} from '../../../src/image/oci/index.js';
import { InputError, IntegrityError } from '../../../src/util/errors.js';
import { MODELS, modelFolder, run, skopeoInspect, skopeoRaw, tempDir } from '../../support/oci-fixtures.js';

const EPOCH = 1_700_000_000;
const cleanup: string[] = [];
after(async () => {
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});
async function tmp(prefix: string): Promise<string> {
  const d = await tempDir(prefix);
  cleanup.push(d);
  return d;
}

/** Builds the image the pipeline would: scratch + one layer per model with provenance annotations. */
async function buildImage(folders: Record<string, string>, compression: 'none' | 'gzip', cacheDir?: string): Promise<ImageValue> {
  const layers = [];
  for (const [id, dir] of Object.entries(folders)) {
    const layer = await dirLayer(dir, `app/models/${id}`, { compression, epoch: EPOCH, ...(cacheDir ? { cacheDir } : {}) });
    layers.push(withLayerAnnotations(layer, modelLayerAnnotations({ id, repo: `local/${id}`, commit: 'abc123' })));
  }
  return appendLayers(scratchImage(), layers, {
    created: epochToRfc3339(EPOCH),
    annotations: imageAnnotations({ epoch: EPOCH, revision: 'deadbeef', source: 'https://example.com/bake', version: '1.0.0' }),
    labels: { 'dev.bake.recipe': 'test' },
    env: ['BAKE_MODELS=/app/models'],
    workdir: '/app',
    history: Object.keys(folders).map((id) => `bake: model ${id}`),
  });
}

async function tarEntries(stream: NodeJS.ReadableStream): Promise<{ name: string; mode: number; uid: number; gid: number; uname: string; gname: string; mtime: number; size: number; sha256: string }[]> {
  const ex = tar.extract();
  const out: { name: string; mode: number; uid: number; gid: number; uname: string; gname: string; mtime: number; size: number; sha256: string }[] = [];
  (stream as NodeJS.ReadableStream).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const entry of ex) {
    const h = createHash('sha256');
    for await (const c of entry) h.update(c as Buffer);
    const hd = entry.header;
    out.push({ name: hd.name, mode: hd.mode!, uid: hd.uid!, gid: hd.gid!, uname: hd.uname ?? '', gname: hd.gname ?? '', mtime: hd.mtime!.getTime() / 1000, size: hd.size!, sha256: h.digest('hex') });
  }
  return out;
}

describe('dirLayer', () => {
  it('packs sorted entries with one mtime, owner 0:0 and fixed modes, under the prefix', async () => {
    const dir = await modelFolder(join(MODELS, 'silero-vad'), 'vad');
    const layer = await dirLayer(dir, 'app/models/vad', { compression: 'none', epoch: EPOCH });
    assert.equal(layer.mediaType, MediaType.ociLayerTar);
    assert.equal(layer.digest, layer.diffId, 'an uncompressed layer digest is its diff_id');
    const entries = await tarEntries(await layer.open());
    const names = entries.map((e) => e.name);
    assert.deepEqual(names.slice(0, 3), ['app/', 'app/models/', 'app/models/vad/']);
    assert.deepEqual(names.slice(3), [...names.slice(3)].sort(), 'entries sorted');
    assert.ok(names.includes('app/models/vad/manifest.json'));
    for (const e of entries) {
      assert.equal(e.mtime, EPOCH, `${e.name} mtime`);
      assert.equal(e.uid, 0);
      assert.equal(e.gid, 0);
      assert.equal(e.uname, '');
      assert.equal(e.gname, '');
      assert.equal(e.mode, e.name.endsWith('/') ? 0o755 : 0o644, `${e.name} mode`);
    }
    // The weights are byte-for-byte the source files.
    const onnx = entries.find((e) => e.name === 'app/models/vad/silero_vad.onnx')!;
    assert.equal(onnx.sha256, '1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3');
  });

  it('gives the same digest for copies with other mtimes, and gzip keeps the diff_id', async () => {
    const a = await modelFolder(join(MODELS, 'stories260K/hf'), 's', new Date('2020-01-01T00:00:00Z'));
    const b = await modelFolder(join(MODELS, 'stories260K/hf'), 's', new Date('2024-06-01T12:34:56Z'));
    const la = await dirLayer(a, 'app/models/s', { compression: 'none', epoch: EPOCH });
    const lb = await dirLayer(b, 'app/models/s', { compression: 'none', epoch: EPOCH });
    assert.equal(la.digest, lb.digest);
    const ga = await dirLayer(a, 'app/models/s', { compression: 'gzip', epoch: EPOCH });
    const gb = await dirLayer(b, 'app/models/s', { compression: 'gzip', epoch: EPOCH });
    assert.equal(ga.mediaType, MediaType.ociLayerGzip);
    assert.equal(ga.digest, gb.digest);
    assert.equal(ga.diffId, la.digest, 'diff_id is the digest of the uncompressed tar');
    assert.notEqual(ga.digest, la.digest);
    const other = await dirLayer(a, 'app/models/s', { compression: 'none', epoch: EPOCH + 1 });
    assert.notEqual(other.digest, la.digest, 'the epoch is part of the bytes');
  });

  it('reuses a cached blob and notices a changed folder', async () => {
    const dir = await modelFolder(join(MODELS, 'stories260K/hf'), 's');
    const cacheDir = await tmp('layer-cache');
    const first = await dirLayer(dir, 'app/models/s', { compression: 'none', epoch: EPOCH, cacheDir });
    assert.ok(first.verifiedFile, 'cached layers point at their blob file');
    const again = await dirLayer(dir, 'app/models/s', { compression: 'none', epoch: EPOCH, cacheDir });
    assert.equal(again.digest, first.digest);
    assert.equal((await stat(again.verifiedFile!)).size, first.size);
    await appendFile(join(dir, 'config.json'), ' ');
    const changed = await dirLayer(dir, 'app/models/s', { compression: 'none', epoch: EPOCH, cacheDir });
    assert.notEqual(changed.digest, first.digest);
  });

  it('with a contentKey, a fresh copy of the same content hits the cache', async () => {
    const cacheDir = await tmp('layer-cache');
    const a = await modelFolder(join(MODELS, 'stories260K/hf'), 's');
    const first = await dirLayer(a, 'app/models/s', { compression: 'none', epoch: EPOCH, cacheDir, contentKey: 'sha256:aaa' });
    const b = await modelFolder(join(MODELS, 'stories260K/hf'), 's');
    let read = 0;
    const second = await dirLayer(b, 'app/models/s', { compression: 'none', epoch: EPOCH, cacheDir, contentKey: 'sha256:aaa', onProgress: (n) => (read += n) });
    assert.equal(second.digest, first.digest);
    assert.equal(read, 0, 'nothing re-read');
    let readNoKey = 0;
    await dirLayer(b, 'app/models/s', { compression: 'none', epoch: EPOCH, cacheDir, onProgress: (n) => (readNoKey += n) });
    assert.ok(readNoKey > 1_000_000, 'without a key, new inodes mean a re-pack');
  });

  it('refuses bad prefixes, missing folders and links to folders', async () => {
    const dir = await modelFolder(join(MODELS, 'stories260K/hf'), 's');
    for (const prefix of ['../etc', 'app/../../x', '', 'a//b', 'app/./m']) {
      await assert.rejects(dirLayer(dir, prefix, { compression: 'none', epoch: EPOCH }), InputError, prefix);
    }
    await assert.rejects(dirLayer(join(dir, 'nope'), 'app/models/s', { compression: 'none', epoch: EPOCH }), InputError);
    await assert.rejects(dirLayer(dir, 'app/models/s', { compression: 'zstd' as 'none', epoch: EPOCH }), InputError);
    await assert.rejects(dirLayer(dir, 'app/models/s', { compression: 'none', epoch: -1 }), InputError);
    await mkdir(join(dir, 'inner'));
    await symlink('inner', join(dir, 'inner-link'));
    await assert.rejects(dirLayer(dir, 'app/models/s', { compression: 'none', epoch: EPOCH }), /inner-link is a symbolic link to a folder/);
  });

  it('follows a link to a file inside the folder and stores its content', async () => {
    const dir = join(await tmp('links'), 'm');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'config.json'), '{"a":1}');
    await symlink('../config.json', join(dir, 'sub', 'alias.json'));
    const layer = await dirLayer(dir, 'app/models/m', { compression: 'none', epoch: EPOCH });
    const entries = await tarEntries(await layer.open());
    const alias = entries.find((e) => e.name === 'app/models/m/sub/alias.json')!;
    assert.equal(alias.sha256, createHash('sha256').update('{"a":1}').digest('hex'));
  });

  it('never archives a link target outside the folder: the link is refused by name', async () => {
    for (const target of ['/etc/passwd', '/etc']) {
      const dir = join(await tmp('links'), 'm');
      await mkdir(dir);
      await writeFile(join(dir, 'model.onnx'), 'x');
      await symlink(target, join(dir, 'weights.onnx_data'));
      await assert.rejects(dirLayer(dir, 'app/models/m', { compression: 'none', epoch: EPOCH }), (e: InputError) => {
        assert.ok(e instanceof InputError, String(e));
        assert.ok(e.message.includes(`${join(dir, 'weights.onnx_data')} is a symbolic link to ${target}, outside`), e.message);
        return true;
      });
    }
    // Swapped for an outside link after the folder was listed: caught when the layer is packed.
    const dir = join(await tmp('links'), 'm');
    await mkdir(dir);
    await writeFile(join(dir, 'weights.onnx_data'), 'x'.repeat(2));
    const layer = await dirLayer(dir, 'app/models/m', { compression: 'none', epoch: EPOCH });
    await rm(join(dir, 'weights.onnx_data'));
    const outside = join(await tmp('links'), 'secret');
    await writeFile(outside, 'yy');
    await symlink(outside, join(dir, 'weights.onnx_data'));
    await assert.rejects(async () => {
      for await (const _chunk of await layer.open());
    }, /weights\.onnx_data is a symbolic link to .*secret, outside/);
  });
});

describe('writeOciLayout', () => {
  it('two builds from separate copies give one manifest digest, and skopeo agrees', async () => {
    const digests: string[] = [];
    const outs: string[] = [];
    for (const when of [new Date('2021-01-01T00:00:00Z'), new Date()]) {
      const folders = {
        vad: await modelFolder(join(MODELS, 'silero-vad'), 'vad', when),
        stories: await modelFolder(join(MODELS, 'stories260K/hf'), 'stories', when),
      };
      const img = await buildImage(folders, 'none');
      const out = join(await tmp('layout'), 'oci');
      const { manifestDigest } = await writeOciLayout(img, out, { tags: ['1.0.0-cpu', '1.0.0'] });
      digests.push(manifestDigest);
      outs.push(out);
    }
    assert.equal(digests[0], digests[1]);
    const a = await readFile(join(outs[0]!, 'index.json'));
    const b = await readFile(join(outs[1]!, 'index.json'));
    assert.ok(a.equals(b), 'index.json is byte-identical too');

    const inspected = await skopeoInspect(`oci:${outs[0]}:1.0.0-cpu`);
    assert.equal(inspected.Digest, digests[0]);
    assert.equal(inspected.Layers.length, 2);
    assert.equal(inspected.Labels?.['dev.bake.recipe'], 'test');
    const raw = (await skopeoRaw(`oci:${outs[0]}:1.0.0`)) as { annotations: Record<string, string>; layers: { annotations: Record<string, string> }[] };
    assert.equal(raw.annotations['org.opencontainers.image.created'], '2023-11-14T22:13:20Z');
    assert.equal(raw.annotations['org.opencontainers.image.revision'], 'deadbeef');
    assert.equal(raw.layers[0]!.annotations['dev.bake.model.id'], 'vad');
  });

  it('umoci unpacks the layout into the files we packed', async () => {
    const vad = await modelFolder(join(MODELS, 'silero-vad'), 'vad');
    const img = await buildImage({ vad }, 'gzip');
    const out = join(await tmp('layout'), 'oci');
    await writeOciLayout(img, out, { tags: ['t'] });
    const bundle = join(await tmp('bundle'), 'b');
    await run('umoci', ['unpack', '--image', `${out}:t`, bundle]);
    const unpacked = join(bundle, 'rootfs/app/models/vad/silero_vad.onnx');
    const h = createHash('sha256');
    for await (const c of createReadStream(unpacked)) h.update(c as Buffer);
    assert.equal(h.digest('hex'), '1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3');
    const st = await stat(unpacked);
    assert.equal(st.mtimeMs / 1000, EPOCH);
    assert.equal(st.mode & 0o777, 0o644);
  });

  it('builds on a base read from a layout another tool wrote, recording base.name and base.digest', async () => {
    // umoci writes the base: an independent producer of OCI layouts (gzip layers, its own JSON).
    const baseDir = join(await tmp('base'), 'layout');
    await run('umoci', ['init', '--layout', baseDir]);
    await run('umoci', ['new', '--image', `${baseDir}:bookworm`]);
    const rootfsSrc = join(await tmp('rootfs'), 'etc');
    await mkdir(rootfsSrc, { recursive: true });
    await writeFile(join(rootfsSrc, 'os-release'), 'ID=testbase\n');
    await run('umoci', ['insert', '--image', `${baseDir}:bookworm`, rootfsSrc, '/etc']);
    const baseDigest = (await skopeoInspect(`oci:${baseDir}:bookworm`)).Digest;

    const base = await readOciLayout(baseDir, 'bookworm');
    assert.equal(base.layers.length, 1);
    assert.equal(base.source?.digest, baseDigest);
    // Re-writing an unmodified base keeps its digest (its config bytes are kept as they came).
    const copy = join(await tmp('copy'), 'oci');
    assert.equal((await writeOciLayout(base, copy, { tags: ['same'] })).manifestDigest, baseDigest);

    const vad = await modelFolder(join(MODELS, 'silero-vad'), 'vad');
    const layer = await dirLayer(vad, 'app/models/vad', { compression: 'none', epoch: EPOCH });
    const img = appendLayers(base, [layer], { created: epochToRfc3339(EPOCH), cmd: ['/bin/true'] });
    assert.equal(img.annotations['org.opencontainers.image.base.digest'], baseDigest);
    assert.equal(img.annotations['org.opencontainers.image.base.name'], 'bookworm');
    const out = join(await tmp('layout'), 'oci');
    await writeOciLayout(img, out, { tags: ['v1'] });
    const inspected = await skopeoInspect(`oci:${out}:v1`);
    assert.equal(inspected.Layers[0], base.layers[0]!.digest);
    assert.equal(inspected.Layers[1], layer.digest);
    const cfg = (await skopeoRaw(`oci:${out}:v1`, true)) as { rootfs: { diff_ids: string[] }; config: { Cmd: string[] } };
    assert.deepEqual(cfg.rootfs.diff_ids, [base.layers[0]!.diffId, layer.diffId]);
    assert.deepEqual(cfg.config.Cmd, ['/bin/true']);
    // umoci reads the result back, base files and model files both present.
    const bundle = join(await tmp('bundle'), 'b');
    await run('umoci', ['unpack', '--image', `${out}:v1`, bundle]);
    assert.equal(await readFile(join(bundle, 'rootfs/etc/os-release'), 'utf8'), 'ID=testbase\n');
    assert.ok((await stat(join(bundle, 'rootfs/app/models/vad/manifest.json'))).isFile());
  });

  it('adds tags to an existing layout and keeps the others', async () => {
    const vad = await modelFolder(join(MODELS, 'silero-vad'), 'vad');
    const s = await modelFolder(join(MODELS, 'stories260K/hf'), 's');
    const out = join(await tmp('layout'), 'oci');
    const one = await writeOciLayout(await buildImage({ vad }, 'none'), out, { tags: ['a', 'shared'] });
    const two = await writeOciLayout(await buildImage({ s }, 'none'), out, { tags: ['b', 'shared'] });
    assert.equal((await skopeoInspect(`oci:${out}:a`)).Digest, one.manifestDigest);
    assert.equal((await skopeoInspect(`oci:${out}:b`)).Digest, two.manifestDigest);
    assert.equal((await skopeoInspect(`oci:${out}:shared`)).Digest, two.manifestDigest, 'a re-used tag moves');
  });

  it('refuses a non-layout folder, unknown tags and corrupted blobs with clear errors', async () => {
    const vad = await modelFolder(join(MODELS, 'silero-vad'), 'vad');
    const img = await buildImage({ vad }, 'none');
    const busy = await tmp('busy');
    await writeFile(join(busy, 'notes.txt'), 'mine');
    await assert.rejects(writeOciLayout(img, busy, { tags: ['t'] }), (e: unknown) => e instanceof InputError && /not an OCI image layout/.test(e.message));
    await assert.rejects(writeOciLayout(img, join(busy, 'x'), { tags: [] }), InputError);
    await assert.rejects(writeOciLayout(img, join(busy, 'x'), { tags: ['bad tag'] }), InputError);

    const out = join(await tmp('layout'), 'oci');
    await writeOciLayout(img, out, { tags: ['t'] });
    await assert.rejects(readOciLayout(out, 'missing'), (e: unknown) => e instanceof InputError && /one of: t/.test(e.expected ?? ''));
    // Flip bytes in the stored layer: reading succeeds (lazy) but copying it out must fail, leaving no tag.
    const base = await readOciLayout(out, 't');
    const layerFile = join(out, 'blobs/sha256', base.layers[0]!.digest.slice(7));
    const bytes = await readFile(layerFile);
    bytes[bytes.length - 2000] ^= 0xff;
    await writeFile(layerFile, bytes);
    const dest = join(await tmp('dest'), 'oci');
    await assert.rejects(writeOciLayout(base, dest, { tags: ['t'] }), IntegrityError);
    await assert.rejects(stat(join(dest, 'index.json')), /ENOENT/, 'no index.json after a failed write');
    // A re-run with good blobs finishes the same folder.
    const good = await buildImage({ vad }, 'none');
    const finished = await writeOciLayout(good, dest, { tags: ['t'] });
    assert.equal((await skopeoInspect(`oci:${dest}:t`)).Digest, finished.manifestDigest);
    // A config that lies about its digest is caught before parsing.
    const manifestFile = join(out, 'blobs/sha256', base.source!.digest.slice(7));
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
    await writeFile(join(out, 'blobs/sha256', manifest.config.digest.slice(7)), '{"evil":true}');
    await assert.rejects(readOciLayout(out, 't'), IntegrityError);
    await writeFile(join(out, 'index.json'), '{"schemaVersion":2,"manifests":[{"digest":"sha256:../../etc/passwd","size":1,"mediaType":"x"}]}');
    await assert.rejects(readOciLayout(out), (e: unknown) => e instanceof InputError && e.field === 'manifests[0].digest');
  });
});
