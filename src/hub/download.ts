// One file from `resolve/<commit>/<path>` to a verified blob: streamed into `<blob>.incomplete`
// (the name Python's huggingface_hub resumes from too), hashed while it arrives, resumed with a Range
// request after a cut, and renamed into place only when size and digest match.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isRetryableStatus, RetryableError, withRetries } from '../net/retry.js';
import { StallTimer } from '../net/stall.js';
import { IntegrityError, NetworkError } from '../util/errors.js';
import { BackgroundFlusher } from '../util/fs.js';
import type { HubConfig } from './config.js';
import { describeCause, errorText, hubRetryPolicy, refusalError, unreachableError, type HubRequestContext } from './http.js';
import { header, openStream, readErrorBody, type StreamResponse } from './transport.js';

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
  /** Computed when `expect.gitSha1` is set or `wantGitSha1` asked for it. */
  gitSha1?: string;
  /** Bytes received over the network by this call (resumed bytes already on disk not counted). */
  downloadedBytes: number;
}

/** Hashes kept in step with the bytes on disk, so a resume continues them instead of re-reading. */
class ContentHashes {
  sha256: Hash = createHash('sha256');
  /** Only when a git sha1 is wanted (small files): it costs as much time as the sha256. */
  gitSha1?: Hash;
  constructor(readonly size: number, withGitSha1: boolean) {
    if (withGitSha1) this.gitSha1 = createHash('sha1').update(`blob ${size}\0`);
  }
  update(chunk: Uint8Array): void {
    this.sha256.update(chunk);
    this.gitSha1?.update(chunk);
  }
  fresh(): ContentHashes {
    return new ContentHashes(this.size, this.gitSha1 !== undefined);
  }
}

const PROGRESS_STEP = 1 << 20;
const WRITE_BATCH = 4 << 20;

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
  opts: { signal?: AbortSignal; onProgress?: (p: DownloadProgress) => void; wantGitSha1?: boolean } = {},
): Promise<DownloadResult> {
  await mkdir(dirname(incompletePath), { recursive: true });
  let offset = 0;
  let hashes = new ContentHashes(expect.size, opts.wantGitSha1 ?? expect.gitSha1 !== undefined);
  let resumedFromDisk = false;
  const existing = await stat(incompletePath).catch(() => undefined);
  if (existing && existing.isFile() && existing.size > 0 && existing.size <= expect.size) {
    offset = await hashPrefix(incompletePath, existing.size, hashes);
    resumedFromDisk = true;
  }
  const fh = await open(incompletePath, offset > 0 ? 'r+' : 'w');
  // The disk takes the file as it arrives; the sync before the rename then has little left to do.
  const flusher = new BackgroundFlusher(fh);
  let downloadedBytes = 0;
  let restartedAfterMismatch = false;
  try {
    if (offset === 0) await fh.truncate(0);
    for (;;) {
      if (offset < expect.size) {
        const fetched = await fetchRemainder(cfg, url, fh, flusher, offset, hashes, expect.size, ctx, opts);
        downloadedBytes += fetched.received;
        offset = fetched.offset;
        hashes = fetched.hashes;
      }
      const sha256 = hashes.sha256.digest('hex');
      const gitSha1 = hashes.gitSha1?.digest('hex');
      const wrong = mismatch(expect, sha256, gitSha1);
      if (!wrong) {
        await flusher.sync();
        await fh.close();
        await rename(incompletePath, finalPath);
        return { sha256, gitSha1, downloadedBytes };
      }
      // Bytes left by an earlier run may be what is wrong: start once from zero before blaming upstream.
      if (resumedFromDisk && !restartedAfterMismatch) {
        restartedAfterMismatch = true;
        await fh.truncate(0);
        offset = 0;
        hashes = hashes.fresh();
        opts.onProgress?.({ type: 'retry', bytes: 0, total: expect.size, attempt: 1, reason: 'digest mismatch after resuming a partial file; downloading again from the start' });
        continue;
      }
      // A whole fresh download (the transfer is checked by TCP and TLS) that does not match is upstream's content.
      throw new IntegrityError(ctx.path, wrong.expected, wrong.actual, {
        hint: `${ctx.repo}@${ctx.revision ?? '?'} serves other content for ${ctx.path} than the lock pins: the upstream file differs from the lock (rewritten history, or an edited models.lock); if the new content is intended, run \`bake lock --update <model>\``,
      });
    }
  } catch (err) {
    await flusher.settle();
    await fh.close().catch(() => {});
    // Keep a partial file for the next run to resume, unless its content is known to be wrong.
    if (err instanceof IntegrityError) await rm(incompletePath, { force: true });
    throw err;
  }
}

function mismatch(expect: ExpectedContent, sha256: string, gitSha1: string | undefined): { expected: string; actual: string } | undefined {
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
 * resets the retry count and is retried at once, so a flaky link that keeps making progress always
 * finishes. An attempt that receives nothing for `timeoutMs` (headers or body) counts as cut.
 */
async function fetchRemainder(
  cfg: HubConfig,
  url: string,
  fh: FileHandle,
  flusher: BackgroundFlusher,
  startOffset: number,
  startHashes: ContentHashes,
  size: number,
  ctx: HubRequestContext & { path: string },
  opts: { signal?: AbortSignal; onProgress?: (p: DownloadProgress) => void },
): Promise<{ offset: number; received: number; hashes: ContentHashes }> {
  const sink = new BatchedWriter(fh, flusher, startOffset, startHashes);
  let received = 0;
  const timeoutMs = cfg.timeoutMs ?? 30_000;
  const attempt = async (): Promise<{ offset: number; received: number; hashes: ContentHashes }> => {
    const stall = new StallTimer(timeoutMs, opts.signal);
    const before = sink.offset;
    const retry = (reason: string, extra: { status?: number; retryAfter?: string | null; cause?: unknown } = {}) =>
      new RetryableError(reason, { ...extra, progressed: sink.offset > before, final: gaveUp(cfg, url, ctx, reason, extra.status) });
    let res: StreamResponse | undefined;
    try {
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (sink.offset > 0) headers.range = `bytes=${sink.offset}-`;
      res = await openStream(cfg, url, { headers, signal: stall.signal });
      stall.touch();
      if (res.status === 200 || res.status === 206) {
        if (res.status === 200 && sink.offset > 0) {
          // The server ignored Range: take the whole file again from the start.
          await sink.restart();
        } else if (res.status === 206) {
          const range = parseContentRange(header(res, 'content-range'));
          if (!range || range.start !== sink.offset) {
            throw new NetworkError(`server answered a resume of ${ctx.path} at byte ${sink.offset} with range ${header(res, 'content-range')}`, { url: res.url });
          }
          if (range.total !== undefined && range.total !== size) throw new IntegrityError(ctx.path, `${size} bytes`, `${range.total} bytes`);
        }
        const declared = Number(header(res, 'content-length') ?? NaN);
        if (res.status === 200 && Number.isFinite(declared) && declared !== size) {
          throw new IntegrityError(ctx.path, `${size} bytes`, `${declared} bytes`);
        }
        let lastReported = sink.offset;
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          stall.touch();
          if (sink.offset + sink.pending + chunk.length > size) throw new IntegrityError(ctx.path, `${size} bytes`, `more than ${size} bytes`);
          await sink.add(chunk);
          received += chunk.length;
          const at = sink.offset + sink.pending;
          if (at - lastReported >= PROGRESS_STEP) {
            lastReported = at;
            opts.onProgress?.({ type: 'progress', bytes: at, total: size });
          }
        }
        await sink.settle();
        if (sink.offset === size) {
          opts.onProgress?.({ type: 'progress', bytes: size, total: size });
          return { offset: sink.offset, received, hashes: sink.hashes };
        }
        throw retry(`connection closed at byte ${sink.offset} of ${size}`);
      }
      if (res.status === 416 && sink.offset > 0) {
        // Our partial file is at least as long as the server's copy: start over and let the digest decide.
        await sink.restart();
        throw retry('range not satisfiable; restarting from zero');
      }
      if (isRetryableStatus(res.status) || (res.crossOrigin && res.status === 403)) {
        // 403 from a CDN usually means its signed URL expired: the next attempt gets a fresh one.
        throw retry(`HTTP ${res.status}`, { status: res.status, retryAfter: header(res, 'retry-after') });
      }
      const text = await readErrorBody(res.body);
      const answered = res;
      const adapted = { status: answered.status, headers: { get: (n: string) => header(answered, n) } };
      throw refusalError(cfg, adapted, answered.url, ctx, errorText(text), !answered.crossOrigin);
    } catch (err) {
      // Whatever arrived before the failure is good data: keep it for the resume.
      await sink.settle();
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (err instanceof RetryableError || err instanceof IntegrityError || err instanceof NetworkError || isDiskError(err)) throw err;
      throw retry(stall.stalled ? (stall.signal.reason as Error).message : describeCause(err), { cause: err });
    } finally {
      stall.dispose();
      res?.body.destroy();
    }
  };
  return withRetries(hubRetryPolicy(cfg), attempt, {
    signal: opts.signal,
    onRetry: (e) => opts.onProgress?.({ type: 'retry', bytes: sink.offset, total: size, attempt: e.attempt, reason: e.reason }),
  });
}

/** The error a download ends with once its retries are spent. */
function gaveUp(cfg: HubConfig, url: string, ctx: HubRequestContext & { path: string }, reason: string, status?: number): NetworkError {
  if (status !== undefined) {
    return new NetworkError(`download of ${ctx.path} from ${ctx.repo} failed after ${cfg.retries} retries: ${reason}`, {
      url,
      status,
      field: 'repo',
      hint: 'the Hub is rate-limiting or failing; try again later',
    });
  }
  return unreachableError(cfg, url, ctx, new Error(reason));
}

/**
 * Copies received chunks into two fixed buffers of a few MiB and writes one while the other fills:
 * one syscall per batch instead of hundreds, the socket kept busy during writes, and the socket's
 * many small buffers dying young (retaining them was most of the garbage collector's work).
 * `offset` and `hashes` describe the bytes handed to the file; `settle()` waits until they are on it.
 */
class BatchedWriter {
  private buffers = [Buffer.allocUnsafeSlow(WRITE_BATCH), Buffer.allocUnsafeSlow(WRITE_BATCH)];
  private current = 0;
  pending = 0;
  private inflight: Promise<void> = Promise.resolve();
  constructor(
    private readonly fh: FileHandle,
    private readonly flusher: BackgroundFlusher,
    public offset: number,
    public hashes: ContentHashes,
  ) {}

  async add(chunk: Buffer): Promise<void> {
    let from = 0;
    while (from < chunk.length) {
      const n = chunk.copy(this.buffers[this.current]!, this.pending, from);
      this.pending += n;
      from += n;
      if (this.pending === WRITE_BATCH) await this.flush();
    }
  }

  /** Hands the filled buffer to the file and switches to the other one (once its write is done). */
  async flush(): Promise<void> {
    if (this.pending === 0) return;
    const batch = this.buffers[this.current]!.subarray(0, this.pending);
    const at = this.offset;
    this.hashes.update(batch);
    this.offset += batch.length;
    this.pending = 0;
    const previous = this.inflight;
    this.inflight = previous.then(() => writeAll(this.fh, batch, at)).then(() => this.flusher.grown(at + batch.length));
    this.inflight.catch(() => {}); // surfaced by the next await of it, not as an unhandled rejection
    this.current ^= 1;
    await previous; // the buffer we switch to was the one in that write
  }

  /** Everything handed over is written (or the write error is thrown). */
  async settle(): Promise<void> {
    await this.flush();
    await this.inflight;
  }

  async restart(): Promise<void> {
    await this.inflight;
    this.pending = 0;
    await this.fh.truncate(0);
    this.offset = 0;
    this.hashes = this.hashes.fresh();
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
