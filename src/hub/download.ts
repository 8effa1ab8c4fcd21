// One file from `resolve/<commit>/<path>` to a verified blob: streamed into `<blob>.incomplete`
// (the name Python's huggingface_hub resumes from too), hashed while it arrives, resumed with a Range
// request after a cut, and renamed into place only when size and digest match.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IntegrityError, NetworkError } from '../util/errors.js';
import type { HubConfig } from './config.js';
import { backoffMs, describeCause, fetchFollowing, isRetryableStatus, refusalError, sleep, unreachableError, type HubRequestContext } from './http.js';

export interface ExpectedContent {
  size: number;
  /** sha256 the content must have (from the lock or the LFS oid). */
  sha256?: string;
  /** git blob sha1 the content must have (the tree's oid of a non-LFS file). */
  gitSha1?: string;
}

export interface DownloadProgress {
  type: 'progress' | 'retry';
  bytes: number;
  total: number;
  attempt?: number;
  reason?: string;
}

export interface DownloadResult {
  sha256: string;
  gitSha1: string;
  /** Bytes received over the network by this call (resumed bytes already on disk not counted). */
  downloadedBytes: number;
}

/** Hashes kept in step with the bytes on disk, so a resume continues them instead of re-reading. */
class ContentHashes {
  sha256: Hash = createHash('sha256');
  gitSha1: Hash;
  constructor(readonly size: number) {
    this.gitSha1 = createHash('sha1').update(`blob ${size}\0`);
  }
  update(chunk: Uint8Array): void {
    this.sha256.update(chunk);
    this.gitSha1.update(chunk);
  }
}

const PROGRESS_STEP = 1 << 20;

/**
 * Downloads `url` into `incompletePath`, verifies it against `expect`, and renames it to `finalPath`.
 * A partial file left at `incompletePath` by an earlier run is resumed from its end.
 */
export async function downloadVerified(
  cfg: HubConfig,
  url: string,
  incompletePath: string,
  finalPath: string,
  expect: ExpectedContent,
  ctx: HubRequestContext & { path: string },
  opts: { signal?: AbortSignal; onProgress?: (p: DownloadProgress) => void } = {},
): Promise<DownloadResult> {
  await mkdir(dirname(incompletePath), { recursive: true });
  let offset = 0;
  let hashes = new ContentHashes(expect.size);
  let resumedFromDisk = false;
  const existing = await stat(incompletePath).catch(() => undefined);
  if (existing && existing.isFile() && existing.size > 0 && existing.size <= expect.size) {
    offset = await hashPrefix(incompletePath, existing.size, hashes);
    resumedFromDisk = true;
  }
  const fh = await open(incompletePath, offset > 0 ? 'r+' : 'w');
  let downloadedBytes = 0;
  let restartedAfterMismatch = false;
  try {
    if (offset === 0) await fh.truncate(0);
    for (;;) {
      if (offset < expect.size) {
        const fetched = await fetchRemainder(cfg, url, fh, offset, hashes, expect.size, ctx, opts);
        downloadedBytes += fetched.received;
        offset = fetched.offset;
        hashes = fetched.hashes;
      }
      const sha256 = hashes.sha256.digest('hex');
      const gitSha1 = hashes.gitSha1.digest('hex');
      const wrong = mismatch(expect, sha256, gitSha1);
      if (!wrong) {
        await fh.sync();
        await fh.close();
        await rename(incompletePath, finalPath);
        return { sha256, gitSha1, downloadedBytes };
      }
      // Bytes left by an earlier run may be what is wrong: start once from zero before blaming upstream.
      if (resumedFromDisk && !restartedAfterMismatch) {
        restartedAfterMismatch = true;
        await fh.truncate(0);
        offset = 0;
        hashes = new ContentHashes(expect.size);
        opts.onProgress?.({ type: 'retry', bytes: 0, total: expect.size, attempt: 1, reason: 'digest mismatch after resuming a partial file; downloading again from the start' });
        continue;
      }
      throw new IntegrityError(ctx.path, wrong.expected, wrong.actual, {
        hint: `${ctx.repo}@${ctx.revision ?? '?'} served content that does not match the lock; run again (a transfer error) or, if the upstream file really changed, \`bake lock --update\``,
      });
    }
  } catch (err) {
    await fh.close().catch(() => {});
    // Keep a partial file for the next run to resume, unless its content is known to be wrong.
    if (err instanceof IntegrityError) await rm(incompletePath, { force: true });
    throw err;
  }
}

function mismatch(expect: ExpectedContent, sha256: string, gitSha1: string): { expected: string; actual: string } | undefined {
  if (expect.sha256 && expect.sha256 !== sha256) return { expected: `sha256:${expect.sha256}`, actual: `sha256:${sha256}` };
  if (expect.gitSha1 && expect.gitSha1 !== gitSha1) return { expected: `git-sha1:${expect.gitSha1}`, actual: `git-sha1:${gitSha1}` };
  return undefined;
}

async function hashPrefix(path: string, size: number, hashes: ContentHashes): Promise<number> {
  let read = 0;
  for await (const chunk of createReadStream(path, { start: 0, end: size - 1, highWaterMark: 1 << 20 })) {
    hashes.update(chunk as Buffer);
    read += (chunk as Buffer).length;
  }
  return read;
}

/**
 * Fetches bytes [offset, size) with retries, appending them to `fh`. Each attempt asks the Hub again
 * (a fresh, unexpired CDN URL) and resumes at the current offset; an attempt that delivered bytes
 * resets the retry count, so a flaky link that keeps making progress always finishes.
 */
async function fetchRemainder(
  cfg: HubConfig,
  url: string,
  fh: FileHandle,
  startOffset: number,
  startHashes: ContentHashes,
  size: number,
  ctx: HubRequestContext & { path: string },
  opts: { signal?: AbortSignal; onProgress?: (p: DownloadProgress) => void },
): Promise<{ offset: number; received: number; hashes: ContentHashes }> {
  let offset = startOffset;
  let hashes = startHashes;
  let received = 0;
  let failures = 0;
  const timeoutMs = cfg.timeoutMs ?? 30_000;
  for (;;) {
    const attemptCtl = new AbortController();
    const onOuterAbort = () => attemptCtl.abort(opts.signal!.reason);
    opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
    // Idle timer: fires when neither headers nor bytes arrive for timeoutMs.
    let idle = setTimeout(() => attemptCtl.abort(new Error(`no data for ${timeoutMs} ms`)), timeoutMs);
    const touch = () => idle.refresh();
    const before = offset;
    let retryAfter: string | null = null;
    let reason: string;
    try {
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const { response, url: finalUrl, crossOrigin } = await fetchFollowing(cfg, url, { headers, signal: attemptCtl.signal });
      touch();
      if (response.status === 200 || response.status === 206) {
        if (response.status === 200 && offset > 0) {
          // The server ignored Range: take the whole file again from the start.
          await fh.truncate(0);
          offset = 0;
          hashes = new ContentHashes(size);
        } else if (response.status === 206) {
          const range = parseContentRange(response.headers.get('content-range'));
          if (!range || range.start !== offset) {
            await response.body?.cancel().catch(() => {});
            throw new NetworkError(`server answered a resume of ${ctx.path} at byte ${offset} with range ${response.headers.get('content-range')}`, { url: finalUrl });
          }
          if (range.total !== undefined && range.total !== size) {
            await response.body?.cancel().catch(() => {});
            throw new IntegrityError(ctx.path, `${size} bytes`, `${range.total} bytes`);
          }
        }
        const declared = Number(response.headers.get('content-length') ?? NaN);
        if (response.status === 200 && Number.isFinite(declared) && declared !== size) {
          await response.body?.cancel().catch(() => {});
          throw new IntegrityError(ctx.path, `${size} bytes`, `${declared} bytes`);
        }
        let lastReported = offset;
        if (!response.body) throw new Error('response without a body');
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          touch();
          if (offset + chunk.length > size) {
            throw new IntegrityError(ctx.path, `${size} bytes`, `more than ${size} bytes`);
          }
          await writeAll(fh, chunk, offset);
          hashes.update(chunk);
          offset += chunk.length;
          received += chunk.length;
          if (offset - lastReported >= PROGRESS_STEP || offset === size) {
            lastReported = offset;
            opts.onProgress?.({ type: 'progress', bytes: offset, total: size });
          }
        }
        if (offset === size) return { offset, received, hashes };
        reason = `connection closed at byte ${offset} of ${size}`;
      } else if (response.status === 416 && offset > 0) {
        // Our partial file is at least as long as the server's copy: start over and let the digest decide.
        await response.body?.cancel().catch(() => {});
        await fh.truncate(0);
        offset = 0;
        hashes = new ContentHashes(size);
        reason = 'range not satisfiable; restarting from zero';
      } else if (isRetryableStatus(response.status) || (crossOrigin && response.status === 403)) {
        // 403 from a CDN usually means its signed URL expired: the next attempt gets a fresh one.
        retryAfter = response.headers.get('retry-after');
        await response.body?.cancel().catch(() => {});
        reason = `HTTP ${response.status}`;
      } else {
        const text = await response.text().catch(() => '');
        throw refusalError(cfg, response, finalUrl, ctx, text.slice(0, 300));
      }
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (err instanceof IntegrityError || err instanceof NetworkError) throw err;
      if (isDiskError(err)) throw err;
      reason = describeCause(err);
    } finally {
      clearTimeout(idle);
      opts.signal?.removeEventListener('abort', onOuterAbort);
    }
    failures = offset > before ? 1 : failures + 1;
    if (failures > cfg.retries) {
      if (reason.startsWith('HTTP ')) {
        throw new NetworkError(`download of ${ctx.path} from ${ctx.repo} failed after ${cfg.retries} retries: ${reason}`, {
          url,
          status: Number(reason.slice(5)),
          hint: 'the Hub is rate-limiting or failing; try again later',
        });
      }
      throw unreachableError(cfg, url, ctx, new Error(reason));
    }
    opts.onProgress?.({ type: 'retry', bytes: offset, total: size, attempt: failures, reason });
    // A cut after progress is retried at once; repeated failures back off.
    const delay = offset > before && retryAfter === null ? 0 : backoffMs(cfg, failures, retryAfter);
    await sleep(delay, opts.signal);
  }
}

async function writeAll(fh: FileHandle, chunk: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

function isDiskError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === 'ENOSPC' || code === 'EACCES' || code === 'EROFS' || code === 'EDQUOT' || code === 'EIO';
}

function parseContentRange(value: string | null): { start: number; end: number; total?: number } | undefined {
  const m = value && /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}
