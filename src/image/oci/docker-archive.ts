// docker-archive: the tarball `docker load` reads. Docker 20.10 reads only the legacy manifest.json
// (Config/RepoTags/Layers); Docker >= 25 also reads an OCI layout. We write both in one tar, the
// way Docker 25's `docker save` does, so old and new engines and skopeo all accept it.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { InputError } from '../../util/errors.js';
import { withTempFile } from '../../util/fs.js';
import { canonicalJson } from '../../util/json.js';
import { checkBlob, openTarEntry, type BlobSource, type TarEntryHeader } from './blobs.js';
import { serializeImage } from './image.js';
import { Annotation, MediaType, type ImageValue } from './types.js';

type EntryHeader = TarEntryHeader;

export async function writeDockerArchive(
  img: ImageValue,
  file: string,
  opts: { repoTags: string[]; onBytes?: (n: number) => void },
): Promise<{ manifestDigest: string }> {
  for (const t of opts.repoTags) checkRepoTag(t);
  const ser = serializeImage(img);
  const created = typeof img.config.created === 'string' ? Date.parse(img.config.created) : NaN;
  const mtime = new Date(Number.isFinite(created) ? created : 0);
  const base = { mtime, uid: 0, gid: 0, uname: '', gname: '', mode: 0o644 };
  const hex = (d: string) => d.slice('sha256:'.length);

  await withTempFile(file, async (tmp) => {
    const pack = tar.pack();
    const written = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(tmp));
    try {
      await addBuffer(pack, { ...base, name: 'blobs/', type: 'directory', mode: 0o755 });
      await addBuffer(pack, { ...base, name: 'blobs/sha256/', type: 'directory', mode: 0o755 });
      const seen = new Set<string>();
      for (const layer of img.layers) {
        if (seen.has(layer.digest)) continue;
        seen.add(layer.digest);
        await addBlob(pack, { ...base, name: `blobs/sha256/${hex(layer.digest)}`, size: layer.size }, layer, opts.onBytes);
      }
      await addBuffer(pack, { ...base, name: `blobs/sha256/${hex(ser.config.descriptor.digest)}` }, ser.config.bytes);
      await addBuffer(pack, { ...base, name: `blobs/sha256/${hex(ser.manifest.descriptor.digest)}` }, ser.manifest.bytes);
      const index = {
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: [{ ...ser.manifest.descriptor, annotations: opts.repoTags[0] ? { [Annotation.refName]: opts.repoTags[0], 'io.containerd.image.name': opts.repoTags[0] } : undefined }],
      };
      await addBuffer(pack, { ...base, name: 'index.json' }, canonicalJson(index));
      const legacy = [
        {
          Config: `blobs/sha256/${hex(ser.config.descriptor.digest)}`,
          RepoTags: opts.repoTags,
          Layers: img.layers.map((l) => `blobs/sha256/${hex(l.digest)}`),
        },
      ];
      await addBuffer(pack, { ...base, name: 'manifest.json' }, JSON.stringify(legacy));
      await addBuffer(pack, { ...base, name: 'oci-layout' }, canonicalJson({ imageLayoutVersion: '1.0.0' }));
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
      await written.catch(() => {});
      throw err;
    }
    await written;
  });
  return { manifestDigest: ser.manifest.descriptor.digest };
}

function addBuffer(pack: tar.Pack, header: EntryHeader, data?: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null) => (err ? reject(err) : resolve());
    if (data === undefined) pack.entry(header, cb);
    else pack.entry(header, typeof data === 'string' ? data : Buffer.from(data), cb);
  });
}

/** Streams a blob into the archive, hashing it: a blob that is not what its digest says aborts the archive. */
async function addBlob(pack: tar.Pack, header: EntryHeader, blob: BlobSource, onBytes?: (n: number) => void): Promise<void> {
  const entry = await openTarEntry(pack, header);
  const hash = createHash('sha256');
  let bytes = 0;
  const source = blob.verifiedFile ? createReadStream(blob.verifiedFile, { highWaterMark: 1 << 20 }) : await blob.open();
  for await (const chunk of source as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    onBytes?.(chunk.length);
    if (bytes > blob.size) break;
    await entry.write(chunk);
  }
  checkBlob(`blob ${blob.digest}`, blob, { digest: `sha256:${hash.digest('hex')}`, bytes });
  await entry.end();
}

function checkRepoTag(t: string): void {
  if (!/^[a-z0-9][a-z0-9._\-/:]*:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(t)) {
    throw new InputError(`bad image name "${t}" for the docker-archive`, { field: 'repoTags', expected: 'lowercase name:tag, e.g. bake/e5:1.0.0' });
  }
}
