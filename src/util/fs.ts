// File writes that never leave a half-written file: write a temp file beside the target, then rename.
// Reads confined to a folder: untrusted paths (safeJoin) and symbolic links (openInside, listFilesInside).
import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, rename, rm, stat, statfs, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { DiskFullError, InputError } from './errors.js';

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

/** What is wrong with an entry of a folder that bake was asked to read a file from. */
export type FolderEntryProblem = 'missing' | 'outside' | 'dangling' | 'link-to-folder' | 'not-a-file';

/**
 * A file of a folder that cannot be read as one: missing, not a regular file, or reached through a
 * symbolic link that leads outside the folder (or nowhere). `rel` names the entry at fault: for a link,
 * the link itself (which may be a parent folder of the file asked for).
 */
export class FolderEntryError extends InputError {
  constructor(
    readonly problem: FolderEntryProblem,
    readonly folder: string,
    readonly rel: string,
    readonly target?: string,
  ) {
    const at = join(folder, rel);
    const what: Record<FolderEntryProblem, string> = {
      missing: `${at} does not exist`,
      outside: target === undefined ? `${at} is outside ${folder}; refused` : `${at} is a symbolic link to ${target}, outside ${folder}; refused`,
      dangling: `${at} is a symbolic link to ${target ?? 'a path'}, which does not exist`,
      'link-to-folder': `${at} is a symbolic link to a folder (${target ?? '?'}); links to folders are not followed`,
      'not-a-file': `${at} is not a regular file`,
    };
    super(what[problem], {
      file: at,
      expected: 'regular files inside the folder (a symbolic link may point only at a file inside it)',
      hint: problem === 'missing' ? undefined : 'copy the file into the folder instead of linking to it (or point the link at a file inside the folder)',
    });
  }
}

function isInside(realRoot: string, real: string): boolean {
  const rel = relative(realRoot, real);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
}

/** The path the kernel says an open file descriptor refers to (Linux /proc), if it can tell. */
async function openedPath(fh: FileHandle): Promise<string | undefined> {
  try {
    return (await readlink(`/proc/self/fd/${fh.fd}`)).replace(/ \(deleted\)$/, '');
  } catch {
    return undefined;
  }
}

/** The first symbolic link on the way from `root` to `rel` that leads outside `root` or nowhere. */
async function strayLink(root: string, rel: string): Promise<{ problem: 'outside' | 'dangling'; rel: string; target: string } | undefined> {
  const parts = rel.split('/');
  let cur = root;
  for (let i = 0; i < parts.length; i++) {
    const p = join(cur, parts[i]!);
    const st = await lstat(p).catch(() => undefined);
    if (!st) return undefined;
    if (!st.isSymbolicLink()) {
      cur = p;
      continue;
    }
    const at = parts.slice(0, i + 1).join('/');
    const real = await realpath(p).catch(() => undefined);
    if (real === undefined) return { problem: 'dangling', rel: at, target: resolve(dirname(p), await readlink(p)) };
    if (real !== root && !isInside(root, real)) return { problem: 'outside', rel: at, target: real };
    cur = real;
  }
  return undefined;
}

/**
 * Opens the regular file `rel` (a checked relative POSIX path) of `folder` for reading. Symbolic links
 * are followed only while they stay inside the folder; after opening, the kernel is asked which file
 * was opened (/proc/self/fd), so a link swapped in between the check and the open is caught too.
 * Throws FolderEntryError (exit 2) for a missing entry, a special file or a link leading out.
 */
export async function openInside(folder: string, rel: string): Promise<FileHandle> {
  const root = await realpath(folder);
  const full = safeJoin(root, rel);
  if (!full) throw new FolderEntryError('outside', folder, rel);
  let real: string;
  try {
    real = await realpath(full);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    const link = await strayLink(root, rel);
    throw link ? new FolderEntryError(link.problem, folder, link.rel, link.target) : new FolderEntryError('missing', folder, rel);
  }
  if (!isInside(root, real)) {
    const link = await strayLink(root, rel);
    throw new FolderEntryError('outside', folder, link?.rel ?? rel, link?.target ?? real);
  }
  let fh: FileHandle;
  try {
    // O_NOFOLLOW: the resolved path must not have become a link since; O_NONBLOCK: a FIFO does not hang us.
    fh = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new FolderEntryError('outside', folder, rel, real);
    if (code === 'ENOENT') throw new FolderEntryError('missing', folder, rel);
    throw err;
  }
  try {
    const opened = await openedPath(fh);
    const st = await fh.stat();
    if (opened !== undefined) {
      if (!isInside(root, opened)) throw new FolderEntryError('outside', folder, rel, opened);
    } else {
      const now = await stat(real).catch(() => undefined);
      if (!now || now.dev !== st.dev || now.ino !== st.ino) throw new FolderEntryError('outside', folder, rel, real);
    }
    if (!st.isFile()) throw new FolderEntryError('not-a-file', folder, rel);
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * The file a symbolic link `rel` of `folder` points at (its stats), when that is a regular file inside
 * the folder; otherwise a FolderEntryError naming the link (outside, dangling, a folder, a special file).
 * `realRoot` is realpath(folder) when the caller has it.
 */
export async function linkedFileInside(folder: string, rel: string, realRoot?: string): Promise<Stats> {
  const root = realRoot ?? (await realpath(folder));
  const abs = join(root, rel);
  const real = await realpath(abs).catch(() => undefined);
  if (real === undefined) throw new FolderEntryError('dangling', folder, rel, resolve(dirname(abs), await readlink(abs)));
  if (!isInside(root, real)) throw new FolderEntryError('outside', folder, rel, real);
  const st = await stat(real);
  if (st.isDirectory()) throw new FolderEntryError('link-to-folder', folder, rel, real);
  if (!st.isFile()) throw new FolderEntryError('not-a-file', folder, rel);
  return st;
}

/**
 * Sorted relative POSIX paths of the regular files under `folder`. Folders are walked; a symbolic link
 * counts as the file it points to when that file is inside the folder. A link leading outside or
 * nowhere, a link to a folder (not followed: links can loop) and a special file are refused with a
 * FolderEntryError, when `select` (default: everything) picks their path; otherwise they are skipped.
 */
export async function listFilesInside(folder: string, select: (rel: string) => boolean = () => true): Promise<string[]> {
  const root = await realpath(folder);
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    for (const e of await readdir(rel ? join(root, rel) : root, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        await walk(r);
        continue;
      }
      if (!select(r)) continue;
      if (e.isFile()) {
        out.push(r);
      } else if (e.isSymbolicLink()) {
        await linkedFileInside(folder, r, root);
        out.push(r);
      } else {
        throw new FolderEntryError('not-a-file', folder, r);
      }
    }
  }
  await walk('');
  return out.sort();
}

/** Up to `length` bytes of an open file from `offset` (fewer at its end). */
export async function readAt(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}
