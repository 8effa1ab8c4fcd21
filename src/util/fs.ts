// File writes that never leave a half-written file: write a temp file beside the target, then rename.
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';

export function tempPathFor(target: string): string {
  return join(dirname(target), `.${randomBytes(6).toString('hex')}.tmp-${process.pid}`);
}

/** Writes `data` to `target` atomically (same-directory temp file, fsync, rename). */
export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  try {
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
    throw err;
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

/** Runs `fill(tmpPath)` then renames the result onto `target`; removes the temp file on failure. */
export async function withTempFile<T>(target: string, fill: (tmp: string) => Promise<T>): Promise<T> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  try {
    const result = await fill(tmp);
    await rename(tmp, target);
    return result;
  } catch (err) {
    await rm(tmp, { force: true, recursive: true });
    throw err;
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
