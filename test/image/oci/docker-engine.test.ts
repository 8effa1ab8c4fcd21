// What a real Docker engine (Debian's 20.10, a private one) makes of our images: `docker load` of the
// docker-archive, `docker pull` of a push, and `docker run` on the model bytes we packed.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { appendLayers, dirLayer, epochToRfc3339, pushImage, scratchImage, writeDockerArchive, writeOciLayout, type ImageValue } from '../../../src/image/oci/index.js';
import { InputError } from '../../../src/util/errors.js';
import { requireHostTools } from '../../support/host-tools.js';
import { startDockerd, type PrivateDocker } from '../../support/oci-dockerd.js';
import { MODELS, modelFolder, run, skopeoInspect, tempDir } from '../../support/oci-fixtures.js';
import { startRegistry } from '../../support/registry.js';

const EPOCH = 1_700_000_000;
/** Debian's busybox-static: one static binary, a runnable image with nothing else in it. */
const BUSYBOX = '/bin/busybox';
const VAD_SHA = '1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3';
let engine: PrivateDocker;
const cleanup: string[] = [];
before(async () => {
  engine = await startDockerd();
});
after(async () => {
  await engine?.close();
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});

/** A runnable image with no Docker involved: a static busybox layer, then a model layer. */
async function runnableImage(compression: 'none' | 'gzip'): Promise<ImageValue> {
  const tools = join(await tempDir('busybox'), 'bin');
  cleanup.push(tools);
  await mkdir(tools);
  requireHostTools(BUSYBOX);
  await copyFile(BUSYBOX, join(tools, 'busybox'));
  const vad = await modelFolder(join(MODELS, 'silero-vad'), 'vad');
  cleanup.push(vad);
  const layers = [
    await dirLayer(tools, 'bin', { compression, epoch: EPOCH }),
    await dirLayer(vad, 'app/models/vad', { compression, epoch: EPOCH }),
  ];
  return appendLayers(scratchImage(), layers, {
    created: epochToRfc3339(EPOCH),
    workdir: '/app',
    cmd: ['/bin/busybox', 'sha256sum', '/app/models/vad/silero_vad.onnx'],
    labels: { 'dev.bake.test': 'yes' },
  });
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

describe('writeDockerArchive', () => {
  for (const compression of ['none', 'gzip'] as const) {
    it(`docker load accepts it (${compression} layers) and the image runs on the packed weights`, async () => {
      const img = await runnableImage(compression);
      const dir = await tempDir('archive');
      cleanup.push(dir);
      const file = join(dir, 'image.tar');
      const tag = `bake/archive-${compression}:1.0.0`;
      const { manifestDigest } = await writeDockerArchive(img, file, { repoTags: [tag] });
      const loaded = await engine.docker(['load', '-i', file]);
      assert.match(loaded, new RegExp(`Loaded image: ${tag}`));
      const [inspect] = JSON.parse(await engine.docker(['image', 'inspect', tag])) as { Id: string; RootFS: { Layers: string[] }; Config: { Labels: Record<string, string>; WorkingDir: string }; Created: string }[];
      assert.deepEqual(inspect!.RootFS.Layers, img.layers.map((l) => l.diffId));
      assert.equal(inspect!.Config.Labels['dev.bake.test'], 'yes');
      assert.equal(inspect!.Config.WorkingDir, '/app');
      assert.equal(inspect!.Created, '2023-11-14T22:13:20Z');
      const out = await engine.docker(['run', '--rm', '--network', 'none', tag]);
      assert.equal(out.trim(), `${VAD_SHA}  /app/models/vad/silero_vad.onnx`);
      // The same value written as an OCI layout has the same manifest digest.
      const layout = join(dir, 'oci');
      assert.equal((await writeOciLayout(img, layout, { tags: ['x'] })).manifestDigest, manifestDigest);
    });
  }

  it('is byte-identical when written twice, and skopeo reads it', async () => {
    const img = await runnableImage('none');
    const dir = await tempDir('archive2');
    cleanup.push(dir);
    await writeDockerArchive(img, join(dir, 'a.tar'), { repoTags: ['bake/x:1'] });
    await writeDockerArchive(await runnableImage('none'), join(dir, 'b.tar'), { repoTags: ['bake/x:1'] });
    assert.equal(await sha256(join(dir, 'a.tar')), await sha256(join(dir, 'b.tar')));
    const inspected = await skopeoInspect(`docker-archive:${join(dir, 'a.tar')}`);
    assert.equal(inspected.Layers.length, 2);
    // skopeo converts it to an OCI layout and back without complaint, keeping the diff_ids.
    await run('skopeo', ['copy', `docker-archive:${join(dir, 'a.tar')}`, `oci:${join(dir, 'oci')}:t`]);
    const cfg = JSON.parse(await run('skopeo', ['inspect', '--config', `oci:${join(dir, 'oci')}:t`])) as { rootfs: { diff_ids: string[] } };
    assert.deepEqual(cfg.rootfs.diff_ids, img.layers.map((l) => l.diffId));
  });

  it('refuses bad names and leaves no file when a layer is not what it claims', async () => {
    const img = await runnableImage('none');
    const dir = await tempDir('archive3');
    cleanup.push(dir);
    await assert.rejects(writeDockerArchive(img, join(dir, 'x.tar'), { repoTags: ['Bad Name'] }), InputError);
    const lying: ImageValue = { ...img, layers: [img.layers[0]!, { ...img.layers[1]!, verifiedFile: undefined, open: () => img.layers[0]!.open() }] };
    await assert.rejects(writeDockerArchive(lying, join(dir, 'y.tar'), { repoTags: ['bake/y:1'] }), /integrity/);
    await assert.rejects(readFile(join(dir, 'y.tar')), /ENOENT/);
  });
});

describe('pushImage to a registry the engine pulls from', () => {
  for (const compression of ['none', 'gzip'] as const) {
    it(`docker pull takes our OCI manifest (${compression} layers) and runs it`, async () => {
      const registry = await startRegistry();
      try {
        const img = await runnableImage(compression);
        const ref = `${registry.host}/bake/pulled-${compression}`;
        const { manifestDigest } = await pushImage(img, ref, { tags: ['1.0.0'] });
        // 127.0.0.0/8 is an insecure registry for dockerd by default: plain HTTP works.
        const pulled = await engine.docker(['pull', `${ref}:1.0.0`]);
        assert.match(pulled, new RegExp(`Digest: ${manifestDigest}`));
        const out = await engine.docker(['run', '--rm', '--network', 'none', `${ref}:1.0.0`]);
        assert.equal(out.trim(), `${VAD_SHA}  /app/models/vad/silero_vad.onnx`);
      } finally {
        await registry.close();
      }
    });
  }
});
