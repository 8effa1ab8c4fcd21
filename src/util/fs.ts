// File writes that never leave a half-written file: write a temp file beside the target, then rename.
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, statfs, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { DiskFullError } from './errors.js';

export function tempPathFor(target: string): string {
  return join(dirname(target), `.${randomBytes(6).toString('hex')}.tmp-${process.pid}`);
}

/** ENOSPC (device full) or EDQUOT (quota reached). */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Bytes an unprivileged writer may still use at `path` (or its nearest existing parent); undefined if unknown. */
export async function freeBytes(path: string): Promise<number | undefined> {
  for (let d = resolve(path); ; d = dirname(d)) {
    try {
      const s = await statfs(d);
      return s.bavail * s.bsize;
    } catch {
      if (dirname(d) === d) return undefined;
    }
  }
}

/**
 * `err` as a DiskFullError naming `path` and the bytes the write needed when the disk filled up; any
 * other error unchanged. Call it after removing the partial output, so `free` is what is really free.
 */
export async function asDiskFull(err: unknown, path: string, needed?: number, hint?: string): Promise<unknown> {
  if (!isDiskFull(err) || err instanceof DiskFullError) return err;
  return new DiskFullError(path, needed, await freeBytes(dirname(path)), { cause: err, ...(hint ? { hint } : {}) });
}

/** Writes `data` to `target` atomically (same-directory temp file, fsync, rename). */
export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPathFor(target);
  try {
    await mkdir(dirname(target), { recursive: true });
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw await asDiskFull(err, target, typeof data === 'string' ? Buffer.byteLength(data) : data.length);
  }
}

/**
 * Flushes a file being written to disk in the background as it grows, one flush at a time, so the
 * sync that must come before the rename has little left to wait for: the disk works while the writer
 * computes or downloads. Call `grown(bytes)` after writes and `sync()` instead of `fh.sync()`.
 */
export class BackgroundFlusher {
  private flushed = 0;
  private flushing?: Promise<void>;
  constructor(private readonly fh: FileHandle, private readonly everyBytes = 64 << 20) {}

  /** The file now holds `bytes` bytes written. */
  grown(bytes: number): void {
    if (this.flushing || bytes - this.flushed < this.everyBytes) return;
    this.flushing = this.fh.datasync().then(() => {
      this.flushed = bytes;
      this.flushing = undefined;
    });
    this.flushing.catch(() => undefined); // a failure surfaces at sync()
  }

  /** Waits for a background flush (its error is sync()'s to report). Before closing the handle. */
  async settle(): Promise<void> {
    await this.flushing?.catch(() => undefined);
  }

  /** Everything written is on disk. */
  async sync(): Promise<void> {
    await this.settle();
    await this.fh.sync();
  }
}

/**
 * Runs `fill(tmpPath)` then renames the result onto `target`; removes the temp file on failure. A full
 * disk is reported as a DiskFullError naming `target` and `bytes` (what the file needs, when known).
 */
export async function withTempFile<T>(target: string, fill: (tmp: string) => Promise<T>, bytes?: number): Promise<T> {
  const tmp = tempPathFor(target);
  try {
    await mkdir(dirname(target), { recursive: true });
    const result = await fill(tmp);
    await rename(tmp, target);
    return result;
  } catch (err) {
    await rm(tmp, { force: true, recursive: true });
    throw await asDiskFull(err, target, bytes);
  }
}

/**
 * Joins an untrusted relative path (from a repo listing, a tar entry, a manifest) under `root`,
 * refusing absolute paths, `..` segments, and anything that would land outside `root`.
 * Returns undefined when the path is unsafe.
 */
export function safeJoin(root: string, untrusted: string): string | undefined {
  if (!untrusted || untrusted.includes('\0') || isAbsolute(untrusted) || /^[a-zA-Z]:/.test(untrusted)) return undefined;
  const parts = untrusted.split(/[\\/]+/);
  if (parts.some((p) => p === '..')) return undefined;
  const full = resolve(root, normalize(untrusted));
  const rel = relative(resolve(root), full);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep)[0] === '..') return undefined;
  return full;
}
