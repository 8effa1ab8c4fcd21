// Deterministic layer tars from a folder: sorted entries, one mtime, owner 0:0 with no names, fixed
// modes. Same bytes in, same digest out, whatever the machine, umask or checkout time.
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, constants as zlibConstants } from 'node:zlib';
import tar from 'tar-stream';
import { digestOf } from '../../util/digest.js';
import { InputError } from '../../util/errors.js';
import { linkedFileInside, openInside, tempPathFor, writeFileAtomic } from '../../util/fs.js';
import { canonicalJson } from '../../util/json.js';
import { HashCounter, openTarEntry } from './blobs.js';
import { MediaType, type Compression, type Layer } from './types.js';

/**
 * Default: uncompressed. Model weights barely compress (a few percent for fp16/int8, nothing for
 * quantized GGUF), so gzip costs CPU on every build and every pull (single-threaded gunzip) for
 * little gain; an uncompressed layer's digest equals its diff_id and does not depend on the
 * compressor's version. Cog and KitOps store weight layers uncompressed for the same reasons.
 * (bench/image-layer.ts --gzip: gzip bakes incompressible weights ~19x slower than a plain tar.)
 */
export const DEFAULT_COMPRESSION: Compression = 'none';

export interface DirLayerOptions {
  compression: Compression;
  /** SOURCE_DATE_EPOCH: the mtime of every entry, in seconds. */
  epoch: number;
  /**
   * Keeps the built blob here (blobs/sha256/<hex>) keyed by the source listing, so writers copy a
   * file instead of re-reading and re-packing the folder, and a rebuild of an unchanged folder is free.
   */
  cacheDir?: string;
  /**
   * A digest that names the folder's content (e.g. the store artifact it was materialized from).
   * When given, the cache is keyed by it instead of file sizes, mtimes and inodes, so a folder
   * materialized afresh for every build still hits the cache. The caller vouches for it.
   */
  contentKey?: string;
  /** Bytes of source read so far, for progress bars. */
  onProgress?: (bytes: number) => void;
}

interface SourceEntry {
  /** POSIX path inside the layer, without the prefix. */
  rel: string;
  abs: string;
  kind: 'file' | 'dir';
  size: number;
  mtimeMs: number;
  ino: number;
}

const DIR_MODE = 0o755;
const FILE_MODE = 0o644;
const EXEC_MODE = 0o755;
/** Bumped when the tar bytes for the same input change, so cached blobs are not reused. */
const LAYER_FORMAT_VERSION = 1;

export async function dirLayer(srcDir: string, destPrefix: string, opts: DirLayerOptions): Promise<Layer> {
  const prefix = normalizePrefix(destPrefix);
  if (opts.compression !== 'none' && opts.compression !== 'gzip') {
    throw new InputError(`unknown layer compression "${String(opts.compression)}"`, { field: 'compression', expected: '"none" or "gzip"' });
  }
  if (!Number.isSafeInteger(opts.epoch) || opts.epoch < 0) {
    throw new InputError(`layer epoch must be whole seconds >= 0, got ${opts.epoch}`, { field: 'SOURCE_DATE_EPOCH', hint: 'set SOURCE_DATE_EPOCH to a Unix time such as the last commit time' });
  }
  const top = await stat(srcDir).catch(() => undefined);
  if (!top?.isDirectory()) throw new InputError(`layer source ${srcDir} is not a directory`, { file: srcDir, expected: 'a folder holding the model files' });
  const entries = await listTree(srcDir);
  const mediaType = opts.compression === 'gzip' ? MediaType.ociLayerGzip : MediaType.ociLayerTar;
  const spec = { root: srcDir, prefix, entries, epoch: opts.epoch, compression: opts.compression };

  if (opts.cacheDir) return cachedLayer(spec, mediaType, opts.cacheDir, opts.contentKey, opts.onProgress);

  // No cache: hash one pass now, re-pack on open(); writers verify the digest again while copying,
  // so a folder that changes in between is caught rather than published.
  const out = await packAndHash(spec, undefined, opts.onProgress);
  return {
    mediaType,
    digest: out.digest,
    size: out.size,
    diffId: out.diffId,
    open: () => openBlob(spec),
  };
}

interface PackSpec {
  /** The source folder: every file is read from inside it. */
  root: string;
  prefix: string;
  entries: SourceEntry[];
  epoch: number;
  compression: Compression;
}

async function cachedLayer(spec: PackSpec, mediaType: string, cacheDir: string, contentKey: string | undefined, onProgress?: (n: number) => void): Promise<Layer> {
  const key = digestOf({
    v: LAYER_FORMAT_VERSION,
    prefix: spec.prefix,
    epoch: spec.epoch,
    compression: spec.compression,
    // Names and sizes always take part, so even a wrong contentKey cannot pick a layer of another shape.
    files: spec.entries.map((e) => (contentKey ? [e.rel, e.kind, e.size] : [e.rel, e.kind, e.size, e.mtimeMs, e.ino])),
    ...(contentKey ? { contentKey } : {}),
  });
  const recordPath = join(cacheDir, 'layers', `${key}.json`);
  const record = await readFile(recordPath, 'utf8').then((t) => JSON.parse(t) as { digest: string; diffId: string; size: number }, () => undefined);
  if (record) {
    const blobPath = join(cacheDir, 'blobs', 'sha256', record.digest.slice('sha256:'.length));
    const st = await stat(blobPath).catch(() => undefined);
    if (st?.isFile() && st.size === record.size) return fileLayer(mediaType, record, blobPath);
  }
  const blobDir = join(cacheDir, 'blobs', 'sha256');
  await mkdir(blobDir, { recursive: true });
  const tmp = tempPathFor(join(blobDir, 'x'));
  try {
    const out = await packAndHash(spec, tmp, onProgress);
    const blobPath = join(blobDir, out.digest.slice('sha256:'.length));
    // Read-only: writers may hard-link this file into outputs, so nobody should write through it.
    await chmod(tmp, 0o444);
    await rename(tmp, blobPath);
    const rec = { digest: out.digest, diffId: out.diffId, size: out.size };
    await writeFileAtomic(recordPath, canonicalJson(rec));
    return fileLayer(mediaType, rec, blobPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function fileLayer(mediaType: string, rec: { digest: string; diffId: string; size: number }, blobPath: string): Layer {
  return { mediaType, digest: rec.digest, diffId: rec.diffId, size: rec.size, verifiedFile: blobPath, open: () => createReadStream(blobPath) };
}

/** Packs once, hashing the tar (diff_id) and the stored blob (digest), optionally saving the blob. */
async function packAndHash(spec: PackSpec, saveTo: string | undefined, onProgress?: (n: number) => void): Promise<{ digest: string; diffId: string; size: number }> {
  const tarHash = new HashCounter(onProgress);
  const stages: NodeJS.ReadWriteStream[] = [tarHash];
  let blobHash = tarHash;
  if (spec.compression === 'gzip') {
    blobHash = new HashCounter();
    stages.push(gzip(), blobHash);
  }
  const sink = saveTo ? createWriteStream(saveTo) : new PassThrough().resume();
  const packed = packStream({ ...spec, compression: 'none' });
  const run = pipeline as unknown as (...streams: unknown[]) => Promise<void>;
  await Promise.all([run(packed.stream, ...stages, sink), packed.done]);
  const diffId = tarHash.digest();
  return { diffId, digest: spec.compression === 'gzip' ? blobHash.digest() : diffId, size: blobHash.bytes };
}

/** The stored blob bytes: the tar, gzipped when asked. */
function openBlob(spec: PackSpec): Readable {
  const { stream } = packStream(spec);
  if (spec.compression === 'none') return stream;
  const gz = gzip();
  pipeline(stream, gz).catch((err: Error) => gz.destroy(err));
  return gz;
}

function gzip() {
  // Fixed level and no name/mtime in the gzip header (zlib writes mtime 0): deterministic bytes.
  return createGzip({ level: zlibConstants.Z_DEFAULT_COMPRESSION });
}

/** The layer blob as a stream; `done` rejects if a source file vanished or changed size mid-pack. */
function packStream(spec: PackSpec): { stream: Readable; done: Promise<void> } {
  const pack = tar.pack();
  const mtime = new Date(spec.epoch * 1000);
  const base = { mtime, uid: 0, gid: 0, uname: '', gname: '' };
  const done = (async () => {
    try {
      // Parent folders first (app/, app/models/, ...), so the layer extracts with fixed modes.
      const parts = spec.prefix.split('/');
      for (let i = 1; i <= parts.length; i++) {
        await addEntry(pack, { ...base, name: parts.slice(0, i).join('/') + '/', type: 'directory', mode: DIR_MODE });
      }
      for (const e of spec.entries) {
        const name = `${spec.prefix}/${e.rel}`;
        if (e.kind === 'dir') {
          await addEntry(pack, { ...base, name: name + '/', type: 'directory', mode: DIR_MODE });
          continue;
        }
        // Opened inside the folder and checked after opening: a link swapped in since the listing cannot
        // make the layer carry a file from elsewhere.
        const fh = await openInside(spec.root, e.rel);
        try {
          const st = await fh.stat();
          if (st.size !== e.size) throw new InputError(`${e.abs} changed size while the layer was being built (${e.size} -> ${st.size})`, { file: e.abs, hint: 'do not modify the model folder during a build' });
          const mode = st.mode & 0o111 ? EXEC_MODE : FILE_MODE;
          await addFile(pack, { ...base, name, type: 'file', mode, size: e.size }, fh, e.abs);
        } finally {
          await fh.close();
        }
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
      throw err;
    }
  })();
  done.catch(() => {}); // surfaced through the stream's error as well
  // tar-stream streams are streamx streams: expose a plain Node stream to callers.
  return { stream: Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false }), done };
}

function addEntry(pack: tar.Pack, header: EntryHeader): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, (err) => (err ? reject(err) : resolve())));
}

/** Streams one file into the tar with backpressure; never holds more than a chunk or two. */
async function addFile(pack: tar.Pack, header: EntryHeader, fh: FileHandle, path: string): Promise<void> {
  const entry = await openTarEntry(pack, header);
  let written = 0;
  for await (const chunk of fh.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    written += chunk.length;
    if (written > (header.size ?? 0)) throw new InputError(`${path} grew while the layer was being built`, { file: path, hint: 'do not modify the model folder during a build' });
    await entry.write(chunk);
  }
  if (written !== header.size) throw new InputError(`${path} shrank while the layer was being built`, { file: path, hint: 'do not modify the model folder during a build' });
  await entry.end();
}

function normalizePrefix(destPrefix: string): string {
  const trimmed = destPrefix.replace(/^\/+|\/+$/g, '');
  const parts = trimmed.split('/');
  if (!trimmed || parts.some((p) => p === '' || p === '.' || p === '..') || trimmed.includes('\0') || trimmed.includes('\\')) {
    throw new InputError(`bad layer destination "${destPrefix}"`, { field: 'destPrefix', expected: 'a relative POSIX path such as app/models/e5, without . or .. segments' });
  }
  return trimmed;
}

/** Every file and folder under root, sorted by byte order of the POSIX path. Links to files inside root are followed. */
async function listTree(root: string): Promise<SourceEntry[]> {
  const out: SourceEntry[] = [];
  async function walk(dir: string, rel: string): Promise<void> {
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, d.name);
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isSymbolicLink()) {
        // A link to a file inside the folder gives that file's content. A link leading out of the folder
        // is refused (the layer would publish whatever it points at), as are links to folders (they can loop).
        const st = await linkedFileInside(root, r);
        out.push({ rel: r, abs, kind: 'file', size: st.size, mtimeMs: st.mtimeMs, ino: st.ino });
      } else if (d.isDirectory()) {
        const st = await stat(abs);
        out.push({ rel: r, abs, kind: 'dir', size: 0, mtimeMs: st.mtimeMs, ino: st.ino });
        await walk(abs, r);
      } else if (d.isFile()) {
        const st = await stat(abs);
        out.push({ rel: r, abs, kind: 'file', size: st.size, mtimeMs: st.mtimeMs, ino: st.ino });
      } else {
        throw new InputError(`${abs} is not a regular file or folder`, { file: abs, expected: 'only files and folders in a model folder' });
      }
    }
  }
  await walk(root, '');
  return out.sort((a, b) => Buffer.compare(Buffer.from(a.rel), Buffer.from(b.rel)));
}

type EntryHeader = Parameters<tar.Pack['entry']>[0];
