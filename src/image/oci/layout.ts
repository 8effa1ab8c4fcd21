// OCI image layout (image-spec image-layout.md): read a base from one, write an image into one.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { InputError, IntegrityError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/fs.js';
import { canonicalJson } from '../../util/json.js';
import { MAX_JSON_BLOB, writeBlobFile } from './blobs.js';
import { isDigest, ociLayerType, serializeImage } from './image.js';
import { parseConfig, parseIndex, parseManifest, pickPlatform, type Platform } from './parse.js';
import { Annotation, MediaType, type Descriptor, type ImageValue, type Layer, type OciIndex } from './types.js';

const LAYOUT_FILE = 'oci-layout';
const LAYOUT_VERSION = '1.0.0';

export function blobPath(dir: string, digest: string): string {
  if (!isDigest(digest)) throw new InputError(`not a sha256 digest: ${digest}`, { expected: 'sha256:<64 hex>' });
  return join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

export interface WriteProgress {
  /** Called as blob bytes are written (layers only; small JSON blobs are not reported). */
  onBytes?: (n: number) => void;
}

/**
 * Writes `img` into the OCI layout `dir` (created if missing, merged if it is already a layout) and
 * tags it. Blobs land complete or not at all and index.json is replaced last, so an interrupted write
 * never leaves a tag pointing at missing blobs.
 */
export async function writeOciLayout(img: ImageValue, dir: string, opts: { tags: string[] } & WriteProgress): Promise<{ manifestDigest: string }> {
  if (opts.tags.length === 0) throw new InputError('writeOciLayout needs at least one tag', { field: 'tags', hint: 'pass e.g. --output oci:DIR:TAG' });
  for (const tag of opts.tags) checkRefName(tag);
  const ser = serializeImage(img);
  const index = await existingIndex(dir);
  // The marker first: a write that fails half-way leaves a layout a re-run can finish, not a stray folder.
  await writeFileAtomic(join(dir, LAYOUT_FILE), canonicalJson({ imageLayoutVersion: LAYOUT_VERSION }));

  for (const layer of img.layers) await writeBlobFile(layer, blobPath(dir, layer.digest), opts.onBytes);
  await writeSmallBlob(dir, ser.config.descriptor.digest, ser.config.bytes);
  await writeSmallBlob(dir, ser.manifest.descriptor.digest, ser.manifest.bytes);

  const kept = index.manifests.filter((d) => !opts.tags.includes(d.annotations?.[Annotation.refName] ?? ''));
  const added: Descriptor[] = opts.tags.map((tag) => ({ ...ser.manifest.descriptor, annotations: { [Annotation.refName]: tag } }));
  const next: OciIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [...kept, ...added] };
  if (index.annotations) next.annotations = index.annotations;
  await writeFileAtomic(join(dir, 'index.json'), canonicalJson(next));
  return { manifestDigest: ser.manifest.descriptor.digest };
}

async function writeSmallBlob(dir: string, digest: string, bytes: Uint8Array): Promise<void> {
  await writeBlobFile({ digest, size: bytes.length, open: () => bufferStream(bytes) }, blobPath(dir, digest));
}

function bufferStream(bytes: Uint8Array): NodeJS.ReadableStream {
  return Readable.from([Buffer.from(bytes)]);
}

/** The current index.json of a layout, or an empty one for a new or empty folder. */
async function existingIndex(dir: string): Promise<OciIndex> {
  const st = await stat(dir).catch(() => undefined);
  if (!st) return { schemaVersion: 2, manifests: [] };
  if (!st.isDirectory()) throw new InputError(`${dir} exists and is not a folder`, { file: dir, expected: 'a folder for the OCI image layout', hint: 'pick another --output path' });
  const hasLayout = await stat(join(dir, LAYOUT_FILE)).then(() => true, () => false);
  if (!hasLayout) {
    const names = await readdir(dir);
    if (names.length > 0) {
      throw new InputError(`${dir} is not empty and is not an OCI image layout`, { file: dir, expected: `an empty folder or one holding an ${LAYOUT_FILE} file`, hint: 'pick an empty or new folder for --output oci:DIR' });
    }
    return { schemaVersion: 2, manifests: [] };
  }
  await checkLayoutFile(dir);
  const indexFile = join(dir, 'index.json');
  // No index yet: an earlier write stopped before tagging anything.
  if (!(await stat(indexFile).then(() => true, () => false))) return { schemaVersion: 2, manifests: [] };
  return parseIndex(await readJsonFile(indexFile), indexFile);
}

async function checkLayoutFile(dir: string): Promise<void> {
  const file = join(dir, LAYOUT_FILE);
  const value = (await readJsonFile(file)) as { imageLayoutVersion?: unknown } | null;
  if (typeof value?.imageLayoutVersion !== 'string' || !value.imageLayoutVersion.startsWith('1.')) {
    throw new InputError(`${file} does not declare a supported layout version`, { file, field: 'imageLayoutVersion', expected: '"1.0.0"' });
  }
}

async function readJsonFile(file: string): Promise<unknown> {
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) throw new InputError(`${file} is missing`, { file, hint: 'is this folder an OCI image layout (skopeo copy ... oci:DIR:TAG makes one)?' });
  if (st.size > MAX_JSON_BLOB) throw new InputError(`${file} is larger than ${MAX_JSON_BLOB} bytes`, { file });
  const text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InputError(`${file} is not valid JSON: ${(err as Error).message}`, { file, cause: err });
  }
}

/** Reads a JSON blob named by `desc`, checking its size and digest before parsing it. */
async function readJsonBlob(dir: string, desc: Descriptor): Promise<{ value: unknown; bytes: Buffer }> {
  const file = blobPath(dir, desc.digest);
  if (desc.size > MAX_JSON_BLOB) throw new InputError(`${file}: descriptor size ${desc.size} is too large for a JSON blob`, { file });
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) throw new InputError(`blob ${desc.digest} is missing from the layout`, { file, hint: 'the layout is incomplete; copy it again' });
  if (st.size !== desc.size) throw new IntegrityError(file, `${desc.size} bytes`, `${st.size} bytes`);
  const bytes = await readFile(file);
  const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (actual !== desc.digest) throw new IntegrityError(file, desc.digest, actual);
  try {
    return { value: JSON.parse(bytes.toString('utf8')), bytes };
  } catch (err) {
    throw new InputError(`${file} is not valid JSON: ${(err as Error).message}`, { file, cause: err });
  }
}

/**
 * Reads an image from a local OCI layout. `ref` is a tag (the ref.name annotation) or a manifest
 * digest; it may be left out when the layout holds one image. Layers stay on disk and are checked
 * against their digests when a writer copies them.
 */
export async function readOciLayout(dir: string, ref?: string, opts: { platform?: Platform } = {}): Promise<ImageValue> {
  await checkLayoutFile(dir);
  const indexFile = join(dir, 'index.json');
  const index = parseIndex(await readJsonFile(indexFile), indexFile);
  let desc = selectManifest(index, ref, indexFile);
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  for (let depth = 0; desc.mediaType === MediaType.ociIndex || desc.mediaType === MediaType.dockerManifestList; depth++) {
    if (depth > 4) throw new InputError(`${indexFile}: image indexes nest too deep`, { file: indexFile });
    const nested = await readJsonBlob(dir, desc);
    desc = pickPlatform(parseIndex(nested.value, blobPath(dir, desc.digest)), platform, blobPath(dir, desc.digest));
  }
  const manifestFile = blobPath(dir, desc.digest);
  const m = await readJsonBlob(dir, desc);
  const manifest = parseManifest(m.value, manifestFile);
  const c = await readJsonBlob(dir, manifest.config);
  const config = parseConfig(c.value, blobPath(dir, manifest.config.digest));
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new InputError(`${manifestFile}: ${manifest.layers.length} layers but the config lists ${config.rootfs.diff_ids.length} diff_ids`, { file: manifestFile });
  }
  const layers: Layer[] = manifest.layers.map((l, i) => {
    const path = blobPath(dir, l.digest);
    return {
      mediaType: ociLayerType(l.mediaType),
      digest: l.digest,
      size: l.size,
      diffId: config.rootfs.diff_ids[i]!,
      ...(l.annotations ? { annotations: l.annotations } : {}),
      open: () => createReadStream(path),
    };
  });
  const refName = desc.annotations?.[Annotation.refName] ?? ref ?? desc.digest;
  return {
    config,
    layers,
    annotations: manifest.annotations ?? {},
    source: { name: refName, digest: desc.digest },
    raw: { config: c.bytes, manifest: m.bytes, manifestMediaType: manifest.mediaType },
  };
}

function selectManifest(index: OciIndex, ref: string | undefined, file: string): Descriptor {
  const refs = index.manifests.map((d) => d.annotations?.[Annotation.refName]).filter((r): r is string => !!r);
  if (ref === undefined) {
    if (index.manifests.length === 1) return index.manifests[0]!;
    throw new InputError(`${file} holds ${index.manifests.length} images; say which one`, { file, expected: `one of: ${refs.join(', ') || '(no tags)'}`, hint: 'use oci:DIR:TAG' });
  }
  const found = isDigest(ref) ? index.manifests.find((d) => d.digest === ref) : index.manifests.find((d) => d.annotations?.[Annotation.refName] === ref);
  if (!found) throw new InputError(`no image tagged "${ref}" in ${file}`, { file, expected: `one of: ${refs.join(', ') || '(no tags)'}` });
  return found;
}

function checkRefName(tag: string): void {
  // image-layout: ref.name follows the OCI reference grammar; a tag is the common case.
  if (!/^[A-Za-z0-9][A-Za-z0-9._\-:/@+]{0,254}$/.test(tag)) {
    throw new InputError(`bad tag "${tag}"`, { field: 'tags', expected: 'letters, digits and . _ - : / @ +, starting with a letter or digit' });
  }
}
