// Deterministic layer tars from a folder: sorted entries, one mtime, owner 0:0 with no names, fixed
// modes. Same bytes in, same digest out, whatever the machine, umask or checkout time.
//
// Packing runs at the hash's speed: each file is read in 4 MiB buffers that are hashed and written from
// where they are, the next read and the previous write running in the thread pool while the main thread
// hashes; the tar headers are made here (tarHeader) byte for byte as tar-stream makes them.
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { createHash, type Hash } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, constants as zlibConstants, type Gzip } from 'node:zlib';
import { digestOf } from '../../util/digest.js';
import { InputError } from '../../util/errors.js';
import { linkedFileInside, openInside, tempPathFor, writeFileAtomic } from '../../util/fs.js';
import { canonicalJson } from '../../util/json.js';
import { HashCounter } from './blobs.js';
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

  // No cache: hash one pass now, re-pack when written (into a file in one pass, or as a stream); writers
  // check the digest of what they wrote, so a folder that changes in between is caught rather than published.
  const out = await packAndHash(spec, undefined, opts.onProgress);
  return {
    mediaType,
    digest: out.digest,
    size: out.size,
    diffId: out.diffId,
    open: () => openBlob(spec),
    writeFile: async (path, onBytes) => {
      const wrote = await packAndHash(spec, path, onBytes);
      return { digest: wrote.digest, size: wrote.size };
    },
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
  const tarHash = createHash('sha256');
  if (spec.compression === 'none') {
    const out = saveTo ? await open(saveTo, 'w') : undefined;
    const sink = new HashingFileSink(tarHash, out, onProgress);
    try {
      await packTar(spec, (chunk) => sink.take(chunk));
      await sink.done();
    } finally {
      await sink.done().catch(() => undefined);
      await out?.close();
    }
    const digest = `sha256:${tarHash.digest('hex')}`;
    return { diffId: digest, digest, size: sink.bytes };
  }
  // gzip: the tar is hashed as it is made (diff_id), the compressed stream as it is saved (digest).
  const gz = gzip();
  const blobHash = new HashCounter();
  const saved = pipeline(gz, blobHash, saveTo ? createWriteStream(saveTo) : new HashCounter().resume());
  saved.catch(() => undefined); // surfaced below
  try {
    await packTar(spec, (chunk) => {
      tarHash.update(chunk);
      onProgress?.(chunk.length);
      return writeToGzip(gz, chunk);
    });
    gz.end();
  } catch (err) {
    gz.destroy(err as Error);
    await saved.catch(() => undefined);
    throw err;
  }
  await saved;
  return { diffId: `sha256:${tarHash.digest('hex')}`, digest: blobHash.digest(), size: blobHash.bytes };
}

/** Hashes every chunk in order and writes it at its offset; a chunk's promise settles when its write is done. */
class HashingFileSink {
  bytes = 0;
  private readonly writes = new Set<Promise<void>>();
  private failure?: unknown;

  constructor(private readonly hash: Hash, private readonly out: FileHandle | undefined, private readonly onProgress?: (n: number) => void) {}

  take(chunk: Uint8Array): Promise<void> | undefined {
    if (this.failure !== undefined) throw this.failure;
    this.hash.update(chunk);
    this.onProgress?.(chunk.length);
    const at = this.bytes;
    this.bytes += chunk.length;
    if (!this.out) return undefined;
    const p = writeFully(this.out, chunk, at).catch((err: unknown) => {
      this.failure ??= err;
      throw err;
    });
    this.writes.add(p);
    p.then(() => this.writes.delete(p), () => this.writes.delete(p));
    return p;
  }

  async done(): Promise<void> {
    await Promise.allSettled([...this.writes]);
    if (this.failure !== undefined) throw this.failure;
  }
}

async function writeFully(fh: FileHandle, chunk: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < chunk.length;) {
    const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

/** Hands a chunk to gzip; resolves once gzip has consumed it (so its buffer may be reused). */
function writeToGzip(gz: Gzip, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => gz.write(chunk, (err) => (err ? reject(err) : resolve())));
}

/** The stored blob bytes: the tar, gzipped when asked. */
function openBlob(spec: PackSpec): Readable {
  const stream = Readable.from(tarChunks(spec), { objectMode: false });
  if (spec.compression === 'none') return stream;
  const gz = gzip();
  pipeline(stream, gz).catch((err: Error) => gz.destroy(err));
  return gz;
}

/** The tar as a sequence of chunks of their own (nothing reused), for a reader that keeps them. */
async function* tarChunks(spec: PackSpec): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  /** Producers waiting for room (several chunks may be in flight at once). */
  const waiting: (() => void)[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let stopped = false;
  let failure: unknown;
  const producing = packTar(spec, async (chunk) => {
    if (stopped) throw new Error('the reader of the layer stopped');
    queue.push(Buffer.from(chunk));
    wake?.();
    // Backpressure: stay a few chunks ahead of the reader at most.
    if (queue.length > 4) await new Promise<void>((r) => waiting.push(r));
  }).then(() => (finished = true), (err: unknown) => (failure = err ?? new Error('packing failed'))).finally(() => wake?.());
  try {
    for (;;) {
      if (queue.length > 0) {
        yield queue.shift()!;
        while (queue.length <= 4 && waiting.length > 0) waiting.shift()!();
        continue;
      }
      if (failure !== undefined) throw failure;
      if (finished) break;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  } finally {
    // A reader that stops early (an error downstream) ends the packing too, closing its files.
    stopped = true;
    for (const w of waiting.splice(0)) w();
    await producing;
  }
}

function gzip() {
  // Fixed level and no name/mtime in the gzip header (zlib writes mtime 0): deterministic bytes.
  return createGzip({ level: zlibConstants.Z_DEFAULT_COMPRESSION });
}

/** Buffers of file data in flight: one hashed on the main thread while the next is read and an earlier one written. */
const READ_BYTES = 4 << 20;
const RING = 3;
const ZEROS = Buffer.alloc(1024);

/**
 * Produces the layer tar of `spec` in order through `emit`. File data is read into a ring of buffers;
 * the promise `emit` returns for a buffer says when it may be filled again (its write is done), so the
 * next read, the hash of this buffer and the write of the previous one overlap. Throws if a file
 * vanished, or changed size, or is reached through a link leading out of the folder.
 */
async function packTar(spec: PackSpec, emit: (chunk: Uint8Array) => Promise<void> | undefined | void): Promise<void> {
  const base = { uid: 0, gid: 0, mtime: spec.epoch };
  const ring = Array.from({ length: RING }, () => Buffer.allocUnsafeSlow(READ_BYTES));
  const busy: (Promise<void> | undefined | void)[] = new Array(RING).fill(undefined);
  let slot = 0;
  // Parent folders first (app/, app/models/, ...), so the layer extracts with fixed modes.
  const parts = spec.prefix.split('/');
  for (let i = 1; i <= parts.length; i++) await emit(tarHeader({ ...base, name: parts.slice(0, i).join('/') + '/', type: 'directory', mode: DIR_MODE, size: 0 }));
  for (const e of spec.entries) {
    const name = `${spec.prefix}/${e.rel}`;
    if (e.kind === 'dir') {
      await emit(tarHeader({ ...base, name: name + '/', type: 'directory', mode: DIR_MODE, size: 0 }));
      continue;
    }
    // Opened inside the folder and checked after opening: a link swapped in since the listing cannot
    // make the layer carry a file from elsewhere.
    const fh = await openInside(spec.root, e.rel);
    try {
      const st = await fh.stat();
      if (st.size !== e.size) throw new InputError(`${e.abs} changed size while the layer was being built (${e.size} -> ${st.size})`, { file: e.abs, hint: 'do not modify the model folder during a build' });
      const mode = st.mode & 0o111 ? EXEC_MODE : FILE_MODE;
      await emit(tarHeader({ ...base, name, type: 'file', mode, size: e.size }));
      const readAt = async (i: number, pos: number): Promise<number> => {
        await busy[i];
        const want = Math.min(READ_BYTES, e.size - pos);
        let got = 0;
        while (got < want) {
          const { bytesRead } = await fh.read(ring[i]!, got, want - got, pos + got);
          if (bytesRead === 0) throw new InputError(`${e.abs} shrank while the layer was being built`, { file: e.abs, hint: 'do not modify the model folder during a build' });
          got += bytesRead;
        }
        return got;
      };
      let pos = 0;
      let next = e.size > 0 ? readAt(slot, 0) : undefined;
      while (next) {
        const n = await next;
        const cur = slot;
        slot = (slot + 1) % RING;
        pos += n;
        // Start the next read before hashing this buffer, so the disk and the hash work at once.
        next = pos < e.size ? readAt(slot, pos) : undefined;
        next?.catch(() => undefined); // surfaced when awaited
        busy[cur] = emit(ring[cur]!.subarray(0, n));
      }
      const { bytesRead } = await fh.read(Buffer.alloc(1), 0, 1, e.size);
      if (bytesRead > 0) throw new InputError(`${e.abs} grew while the layer was being built`, { file: e.abs, hint: 'do not modify the model folder during a build' });
      if (e.size % 512) await emit(ZEROS.subarray(0, 512 - (e.size % 512)));
    } finally {
      await fh.close(); // waits for a read in flight; writes of its buffers go on
    }
  }
  await Promise.all(busy);
  await emit(ZEROS);
}

interface TarHeader {
  name: string;
  type: 'file' | 'directory';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds. */
  mtime: number;
}

/**
 * The header block(s) of a tar entry, byte for byte as tar-stream 3 writes them for the same header
 * (test/image/oci/layer.test.ts holds the two side by side): ustar, the name split into prefix and name
 * when longer than 100 bytes, and for a name that does not fit (or is not ASCII) a PAX header carrying
 * `path`, followed by the entry's header named `PaxHeader`, as tar-stream does.
 */
export function tarHeader(h: TarHeader): Buffer {
  const plain = ustarBlock(h);
  if (plain) return plain;
  const pax = paxRecord('path', h.name);
  const paxHeader = ustarBlock({ ...h, name: 'PaxHeader', type: 'pax-header', size: pax.length })!;
  const entry = ustarBlock({ ...h, name: 'PaxHeader' })!;
  const pad = pax.length % 512 ? 512 - (pax.length % 512) : 0;
  return Buffer.concat([paxHeader, pax, ZEROS.subarray(0, pad), entry]);
}

const TYPEFLAG = { file: 0, directory: 5, 'pax-header': 72 } as const;

function ustarBlock(h: Omit<TarHeader, 'type'> & { type: keyof typeof TYPEFLAG }): Buffer | undefined {
  let name = h.name;
  let prefix = '';
  if (Buffer.byteLength(name) !== name.length) return undefined; // not ASCII: PAX
  while (name.length > 100) {
    const i = name.indexOf('/');
    if (i === -1) return undefined;
    prefix += prefix ? '/' + name.slice(0, i) : name.slice(0, i);
    name = name.slice(i + 1);
  }
  if (name.length > 100 || prefix.length > 155) return undefined;
  const buf = Buffer.alloc(512);
  buf.write(name, 0, 'latin1');
  buf.write(octal(h.mode & 0o7777, 6), 100, 'latin1');
  buf.write(octal(h.uid, 6), 108, 'latin1');
  buf.write(octal(h.gid, 6), 116, 'latin1');
  if (h.size.toString(8).length > 11) {
    // Past 8 GiB the size is a base-256 number (GNU / star), as tar-stream writes it.
    buf[124] = 0x80;
    let n = h.size;
    for (let i = 11; i > 0; i--) {
      buf[124 + i] = n & 0xff;
      n = Math.floor(n / 0x100);
    }
  } else {
    buf.write(octal(h.size, 11), 124, 'latin1');
  }
  buf.write(octal(h.mtime | 0, 11), 136, 'latin1');
  buf[156] = 0x30 + TYPEFLAG[h.type];
  buf.write('ustar\0', 257, 'latin1');
  buf.write('00', 263, 'latin1');
  buf.write(octal(0, 6), 329, 'latin1');
  buf.write(octal(0, 6), 337, 'latin1');
  if (prefix) buf.write(prefix, 345, 'latin1');
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += buf[i]!;
  for (let i = 156; i < 512; i++) sum += buf[i]!;
  buf.write(octal(sum, 6), 148, 'latin1');
  return buf;
}

function octal(value: number, digits: number): string {
  const s = value.toString(8);
  return s.length > digits ? '7'.repeat(digits) + ' ' : '0'.repeat(digits - s.length) + s + ' ';
}

/** One PAX record: "<length> <key>=<value>\n", the length counting itself. */
function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const len = Buffer.byteLength(body);
  let digits = Math.floor(Math.log(len) / Math.log(10)) + 1;
  if (len + digits >= Math.pow(10, digits)) digits++;
  return Buffer.from(`${len + digits}${body}`);
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

