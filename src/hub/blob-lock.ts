// One writer per blob. Two pulls of the same file (two models of one repo in one recipe, or two bake
// processes sharing a cache) would otherwise write the same `.incomplete` file, and one truncating it
// under the other could leave a hole in a blob that the other then names as verified.
// In-process: a promise chain per path. Across processes: a `<path>.lock` file created exclusively,
// holding the owner's pid and host; a lock whose owner is gone on this host is taken over.
import { hostname } from 'node:os';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { sleep } from '../net/retry.js';

const held = new Map<string, Promise<void>>();
const POLL_MS = 200;
/** A lock file this old from another host (or unreadable) is presumed abandoned. */
const STALE_MS = 30 * 60 * 1000;

export async function withBlobLock<T>(path: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  // Queue behind whoever holds it in this process.
  const previous = held.get(path) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const chained = previous.then(() => mine);
  held.set(path, chained);
  try {
    await previous;
    const lockFile = `${path}.lock`;
    await acquireFile(lockFile, signal);
    try {
      return await fn();
    } finally {
      await rm(lockFile, { force: true });
    }
  } finally {
    release();
    if (held.get(path) === chained) held.delete(path);
  }
}

async function acquireFile(lockFile: string, signal?: AbortSignal): Promise<void> {
  const me = `${process.pid} ${hostname()}`;
  await mkdir(dirname(lockFile), { recursive: true });
  for (;;) {
    signal?.throwIfAborted();
    try {
      const fh = await open(lockFile, 'wx');
      await fh.writeFile(me);
      await fh.close();
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
    }
    if (await isStale(lockFile)) {
      await rm(lockFile, { force: true });
      continue;
    }
    await sleep(POLL_MS, signal);
  }
}

async function isStale(lockFile: string): Promise<boolean> {
  const [text, st] = await Promise.all([readFile(lockFile, 'utf8').catch(() => ''), stat(lockFile).catch(() => undefined)]);
  if (!st) return false; // just released: try again
  const m = /^(\d+) (.+)$/.exec(text.trim());
  if (m && m[2] === hostname()) return !isAlive(Number(m[1]));
  return Date.now() - st.mtimeMs > STALE_MS;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}
