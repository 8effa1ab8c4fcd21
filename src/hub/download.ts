// One file from `resolve/<commit>/<path>` to a verified blob: fetched into `<blob>.incomplete` (the name
// Python's huggingface_hub resumes from too), hashed while it arrives, resumed after a cut, and renamed
// into place only when size and digest match.
//
// The bytes go from the socket straight into a connection's batch buffer (src/net/http1.ts), are hashed
// from there and written from there: no copy, no stream, no promise per chunk. A large file is fetched
// as parts over several connections at once (as hf_transfer does), each writing its part at its offset
// of the one temp file, so a CDN that limits each connection is filled N times over.
//
// sha256 in order, one pass: a batch that starts where the hash has reached is hashed from memory before
// it is written (always so with one connection); a part fetched ahead of the hash is read back from the
// page cache when the hash gets there. Parts are handed out in file order, so the read-back trails the
// download closely and the hash finishes a few parts after the last byte arrives, with no second pass
// over the file and no unbounded buffering of parts that arrive early.
//
// Resume: with one connection the temp file is a prefix (as Python writes it); with several, a sidecar
// `<blob>.incomplete.parts` records how far each part got, so a later run fetches only what is missing.
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { setMaxListeners } from 'node:events';
import { dirname } from 'node:path';
import { Http1Pool, HttpProtocolError, type BodySink, type Http1Connection, type Http1Response } from '../net/http1.js';
import { isRetryableStatus, RetryableError, withRetries } from '../net/retry.js';
import { StallTimer } from '../net/stall.js';
import { IntegrityError, NetworkError } from '../util/errors.js';
import { BackgroundFlusher, tempPathFor } from '../util/fs.js';
import type { HubConfig } from './config.js';
import { describeCause, errorText, hubRetryPolicy, refusalError, sameOrigin, unreachableError, type HubRequestContext } from './http.js';

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
  /** Connections the download used at most. */
  connections: number;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  wantGitSha1?: boolean;
  /** Connections for this file (default cfg.connections); files under two parts use one. */
  connections?: number;
  /** Part size for parallel fetches (tests). */
  partBytes?: number;
  /** Trusted TLS certificates instead of the system's (tests). */
  ca?: string | Buffer | (string | Buffer)[];
}

/**
 * Parts: hf_transfer fetches 10 MB chunks. Larger parts mean fewer requests, smaller ones a shorter hash
 * tail and all connections busy on a mid-sized file: two parts per connection, 4 to 16 MiB each.
 */
const MAX_PART_BYTES = 16 << 20;
const MIN_PART_BYTES = 4 << 20;
/** Smaller files come as one stream: a few requests more would buy little. */
const PARALLEL_MIN_BYTES = 32 << 20;
/**
 * More connections only help where one is held back (a CDN that limits each connection): the first
 * lane runs alone for RAMP_MS, and the others join only if it delivered less than ONE_LANE_ENOUGH per
 * second. On a link one connection fills, parallel parts cost CPU (more syscalls, parts hashed from the
 * page cache) and gain nothing.
 */
const RAMP_MS = 300;
const ONE_LANE_ENOUGH = 256 << 20;
/**
 * Per connection: batch buffers, one filling from the socket while the others are written. Two at first;
 * up to four when writes lag behind the socket (a busy disk or thread pool), before reading pauses.
 */
const BATCH_BYTES = 2 << 20;
const MAX_BATCHES = 4;
/** A batch is handed to the file when less than this is left in it (a socket read is at most ~64 KiB). */
const MIN_READ = 64 << 10;
/** Read-back size of the in-order hash. */
const HASH_READ = 2 << 20;
const PROGRESS_STEP = 1 << 20;
const MAX_REDIRECTS = 10;
/** How often a parallel download records its progress for a later resume. */
const SIDECAR_EVERY_MS = 1000;
/** Restarts from zero (a server that ignores Range, or a range it cannot satisfy) before giving up. */
const MAX_RESTARTS = 2;

/** Hashes of the file from byte 0 on; `gitSha1` only when wanted (small files: it costs as much as sha256). */
class ContentHashes {
  sha256: Hash = createHash('sha256');
  gitSha1?: Hash;
  constructor(readonly size: number, readonly withGitSha1: boolean) {
    if (withGitSha1) this.gitSha1 = createHash('sha1').update(`blob ${size}\0`);
  }
  update(chunk: Uint8Array): void {
    this.sha256.update(chunk);
    this.gitSha1?.update(chunk);
  }
}

/** A byte range of the file and how much of it is on disk (`done`) and handed to the disk (`taken`). */
interface Part {
  start: number;
  end: number;
  /** Bytes from `start` written to the file (completed writes). */
  done: number;
  /** Bytes from `start` received and handed to a write (>= done). */
  taken: number;
}

/** A server that cannot serve this download in parts: start again from zero with one connection. */
class RestartFromZero extends Error {}

/**
 * Downloads `url` into `incompletePath`, verifies it against `expect`, and renames it to `finalPath`.
 * A partial file left at `incompletePath` by an earlier run is resumed.
 */
export async function downloadVerified(
  cfg: HubConfig,
  url: string,
  incompletePath: string,
  finalPath: string,
  expect: ExpectedContent,
  ctx: HubRequestContext & { path: string },
  opts: DownloadOptions = {},
): Promise<DownloadResult> {
  await mkdir(dirname(incompletePath), { recursive: true });
  const transfer = new Transfer(cfg, url, incompletePath, expect, ctx, opts);
  await transfer.open();
  try {
    const result = await transfer.run();
    await transfer.commit(finalPath);
    return result;
  } catch (err) {
    await transfer.close(err);
    throw err;
  }
}

class Transfer {
  private fh!: FileHandle;
  private flusher!: BackgroundFlusher;
  private parts: Part[] = [];
  private hasher!: InOrderHasher;
  private readonly sidecarPath: string;
  private readonly size: number;
  /** Part size asked for (tests); otherwise chosen per download. */
  private readonly partBytes?: number;
  private maxConnections: number;
  private usedConnections = 1;
  /** Whether bytes from an earlier run are part of this file. */
  private resumed = false;
  private received = 0;
  /** Bytes on disk or on their way there (what progress reports). */
  private taken = 0;
  private written = 0;
  private lastReported = 0;
  /** The URL the Hub redirected to (a signed CDN URL), reused by the parts until it fails. */
  private resolved?: string;
  private sidecarAt = 0;
  private sidecarWriting: Promise<void> = Promise.resolve();

  constructor(
    private readonly cfg: HubConfig,
    private readonly url: string,
    private readonly incompletePath: string,
    private readonly expect: ExpectedContent,
    private readonly ctx: HubRequestContext & { path: string },
    private readonly opts: DownloadOptions,
  ) {
    this.sidecarPath = `${incompletePath}.parts`;
    this.size = expect.size;
    this.partBytes = opts.partBytes;
    this.maxConnections = Math.max(1, Math.floor(opts.connections ?? cfg.connections ?? 1));
  }

  private get withGitSha1(): boolean {
    return this.opts.wantGitSha1 ?? this.expect.gitSha1 !== undefined;
  }

  /** Opens the temp file and decides what is already there: a sidecar's parts, a prefix, or nothing. */
  async open(): Promise<void> {
    const existing = await stat(this.incompletePath).catch(() => undefined);
    const recorded = existing?.isFile() ? await readSidecar(this.sidecarPath, this.size, existing.size) : undefined;
    this.fh = await open(this.incompletePath, existing?.isFile() ? 'r+' : 'w+'); // read too: the hash may read parts back
    // The disk takes the file as it arrives; the sync before the rename then has little left to do.
    this.flusher = new BackgroundFlusher(this.fh);
    if (recorded) {
      this.parts = recorded;
      this.resumed = recorded.some((p) => p.done > 0);
    } else {
      await rm(this.sidecarPath, { force: true });
      const prefix = existing?.isFile() && existing.size <= this.size ? existing.size : 0;
      if (prefix === 0) await this.fh.truncate(0);
      this.resumed = prefix > 0;
      this.parts = this.plan(prefix);
    }
    this.hasher = new InOrderHasher(this.fh, this.parts, new ContentHashes(this.size, this.withGitSha1));
    this.written = this.taken = this.parts.reduce((n, p) => n + p.done, 0);
  }

  /** Parts for bytes [prefix, size): several when the file is large and more than one connection may run. */
  private plan(prefix: number): Part[] {
    const parts: Part[] = prefix > 0 ? [{ start: 0, end: prefix, done: prefix, taken: prefix }] : [];
    const rest = this.size - prefix;
    const partBytes = this.partBytes ?? Math.min(MAX_PART_BYTES, Math.max(MIN_PART_BYTES, Math.ceil(rest / (2 * this.maxConnections))));
    if (this.maxConnections <= 1 || rest < Math.max(2 * partBytes, this.partBytes ? 0 : PARALLEL_MIN_BYTES)) {
      if (rest > 0 || parts.length === 0) parts.push({ start: prefix, end: this.size, done: 0, taken: 0 });
      return parts;
    }
    // The last parts all finish at about the same time, and the hash then reads back every one that arrived
    // ahead of it: smaller parts at the end (a quarter) shorten that tail. Not when a part size is forced.
    const tail = this.partBytes ? 0 : Math.min(Math.floor(rest / 2), this.maxConnections * partBytes);
    const small = Math.max(1 << 20, Math.floor(partBytes / 4));
    for (let at = prefix; at < this.size;) {
      const step = at < this.size - tail ? partBytes : small;
      const end = Math.min(this.size, at + step, at < this.size - tail ? this.size - tail : this.size);
      parts.push({ start: at, end, done: 0, taken: 0 });
      at = end;
    }
    return parts;
  }

  /**
   * One lane goes on alone: the parts it has not started become one, fetched as one stream (a request
   * per part costs a round trip and a part's bookkeeping each time, for nothing on such a link).
   */
  private coalesce(todo: Part[], next: number): void {
    const rest = todo.slice(next);
    if (rest.length < 2 || rest.some((p) => p.done > 0 || p.taken > 0)) return;
    const first = rest[0]!;
    const after = this.parts.slice(this.parts.indexOf(first));
    // Only a tail of untouched parts (a resumed download may hold finished parts further on).
    if (after.length !== rest.length || after.some((p, i) => p !== rest[i])) return;
    first.end = rest[rest.length - 1]!.end;
    todo.splice(next + 1);
    this.parts.splice(this.parts.indexOf(first) + 1);
  }

  private get parallel(): boolean {
    return this.parts.filter((p) => p.done < p.end - p.start).length > 1;
  }

  async run(): Promise<DownloadResult> {
    let restarts = 0;
    let restartedAfterMismatch = false;
    for (;;) {
      try {
        await this.fetchAll();
      } catch (err) {
        if (!(err instanceof RestartFromZero) || restarts >= MAX_RESTARTS) {
          if (err instanceof RestartFromZero) throw new NetworkError(`download of ${this.ctx.path} from ${this.ctx.repo} kept failing: ${err.message}`, { url: this.url });
          throw err;
        }
        restarts++;
        this.opts.onProgress?.({ type: 'retry', bytes: 0, total: this.size, attempt: restarts, reason: err.message });
        await this.restart(1);
        continue;
      }
      const sha256 = this.hasher.hashes.sha256.digest('hex');
      const gitSha1 = this.hasher.hashes.gitSha1?.digest('hex');
      const wrong = mismatch(this.expect, sha256, gitSha1);
      if (!wrong) return { sha256, gitSha1, downloadedBytes: this.received, connections: this.usedConnections };
      // Bytes left by an earlier run may be what is wrong: start once from zero before blaming upstream.
      if (this.resumed && !restartedAfterMismatch) {
        restartedAfterMismatch = true;
        this.opts.onProgress?.({ type: 'retry', bytes: 0, total: this.size, attempt: 1, reason: 'digest mismatch after resuming a partial file; downloading again from the start' });
        await this.restart(this.maxConnections);
        continue;
      }
      // A whole fresh download (the transfer is checked by TCP and TLS) that does not match is upstream's content.
      throw new IntegrityError(this.ctx.path, wrong.expected, wrong.actual, {
        hint: `${this.ctx.repo}@${this.ctx.revision ?? '?'} serves other content for ${this.ctx.path} than the lock pins: the upstream file differs from the lock (rewritten history, or an edited models.lock); if the new content is intended, run \`bake lock --update <model>\``,
      });
    }
  }

  /** Forgets everything on disk and plans afresh with at most `connections` connections. */
  private async restart(connections: number): Promise<void> {
    await this.sidecarWriting;
    await rm(this.sidecarPath, { force: true });
    await this.fh.truncate(0);
    this.maxConnections = connections;
    this.resumed = false;
    this.written = this.taken = 0;
    this.lastReported = 0;
    this.resolved = undefined;
    this.parts = this.plan(0);
    this.hasher = new InOrderHasher(this.fh, this.parts, new ContentHashes(this.size, this.withGitSha1));
  }

  /** Fetches every part not yet on disk, with up to maxConnections lanes, then finishes the hash. */
  private async fetchAll(): Promise<void> {
    const todo = this.parts.filter((p) => p.done < p.end - p.start);
    if (todo.length > 0) {
      if (this.parallel && !(await stat(this.sidecarPath).then(() => true, () => false))) {
        // Recorded before any part is written at its offset, so a later run never takes holes for data.
        await this.writeSidecar();
        await this.fh.truncate(this.size); // the whole file's extent, each part written in place
      }
      const stop = new AbortController();
      const signal = this.opts.signal ? AbortSignal.any([this.opts.signal, stop.signal]) : stop.signal;
      setMaxListeners(0, signal); // every lane's stall timer listens to it
      const pool = new Http1Pool(this.opts.ca ? { ca: this.opts.ca } : {});
      const lanes = Math.min(this.maxConnections, todo.length);
      this.usedConnections = Math.max(this.usedConnections, 1);
      let next = 0;
      let failure: unknown;
      // The first part's answer says whether the server serves ranges (and where it redirects) before the others start.
      let firstAnswered!: () => void;
      const first = new Promise<void>((r) => (firstAnswered = r));
      // Then the first lane's rate says whether the others are worth starting.
      const rampStart = { at: 0, received: 0 };
      let firstPartDone!: () => void;
      const firstPart = new Promise<void>((r) => (firstPartDone = r));
      const rampOver = first.then(async () => {
        rampStart.at = performance.now();
        rampStart.received = this.received;
        // Decided after RAMP_MS, or sooner when the first part is already in (a fast link).
        await new Promise<void>((r) => {
          const t = setTimeout(r, RAMP_MS);
          void firstPart.then(() => (clearTimeout(t), r()));
          signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
        });
        const perSecond = ((this.received - rampStart.received) * 1000) / Math.max(1, performance.now() - rampStart.at);
        if (perSecond < ONE_LANE_ENOUGH && next < todo.length) return true;
        this.coalesce(todo, next);
        return false;
      });
      const lane = async (index: number) => {
        const buffers = new LaneBuffers();
        if (index > 0) {
          const join = await Promise.race([rampOver, new Promise<boolean>((r) => signal.addEventListener('abort', () => r(false), { once: true }))]);
          if (!join) return;
          this.usedConnections = Math.max(this.usedConnections, index + 1);
        }
        while (!signal.aborted) {
          const part = todo[next++];
          if (!part) return;
          await this.fetchPart(part, pool, buffers, signal, index === 0 ? firstAnswered : () => undefined);
          if (index === 0) {
            firstPartDone();
            // Let the ramp decide (and coalesce what is left) before taking the next part.
            await Promise.race([rampOver, new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }))]);
          }
          await this.recordProgress(false);
        }
      };
      try {
        await Promise.all(Array.from({ length: lanes }, (_, i) => lane(i).catch((err: unknown) => {
          failure ??= err;
          firstAnswered();
          stop.abort(err);
        })));
      } finally {
        pool.close();
      }
      if (failure !== undefined) {
        if (!(failure instanceof RestartFromZero)) await this.recordProgress(true);
        throw this.opts.signal?.aborted ? (this.opts.signal.reason ?? failure) : failure;
      }
    }
    await this.hasher.finish();
  }

  /**
   * Fetches what is missing of `part` with retries: each attempt asks for the rest of the part (the
   * Hub again, or the URL it redirected to), and an attempt that delivered bytes resets the retry count
   * and is retried at once, so a flaky link that keeps making progress always finishes. An attempt that
   * receives nothing for `timeoutMs` (headers or body) counts as cut.
   */
  private async fetchPart(part: Part, pool: Http1Pool, buffers: LaneBuffers, signal: AbortSignal, answered: () => void): Promise<void> {
    const timeoutMs = this.cfg.timeoutMs ?? 30_000;
    const attempt = async (): Promise<void> => {
      while (part.done < part.end - part.start) {
        const stall = new StallTimer(timeoutMs, signal);
        const before = part.taken;
        const from = part.start + part.taken;
        const retry = (reason: string, extra: { status?: number; retryAfter?: string | null; cause?: unknown } = {}) =>
          new RetryableError(reason, { ...extra, progressed: part.taken > before, final: this.gaveUp(reason, extra.status) });
        let answer: Answer | undefined;
        let usedResolved = false;
        const sink = new PartSink(this, part, buffers, stall);
        try {
          // Ask only for bytes the file does not hold; a whole-file answer is asked for only when that is all we want.
          const whole = from === 0 && part.end === this.size;
          usedResolved = this.resolved !== undefined;
          answer = await this.openFollowing(pool, whole ? undefined : `bytes=${from}-${part.end === this.size ? '' : part.end - 1}`, stall.signal);
          stall.touch();
          const res = answer.response;
          if (res.status === 200 || res.status === 206) {
            this.checkAnswer(res, from, part, whole);
            answered();
            sink.response = res;
            await res.readBody(sink, stall.signal);
            await sink.settle();
            pool.release(answer.connection);
            continue; // a server may send less than asked: ask for the rest
          }
          if (res.status === 416 && from > 0) {
            // Our partial file is at least as long as the server's copy: start over and let the digest decide.
            throw new RestartFromZero('range not satisfiable; restarting from zero');
          }
          if (isRetryableStatus(res.status) || (answer.crossOrigin && res.status === 403)) {
            // 403 from a CDN usually means its signed URL expired: the next attempt gets a fresh one.
            throw retry(`HTTP ${res.status}`, { status: res.status, retryAfter: res.header('retry-after') });
          }
          const text = await res.text(4096, stall.signal);
          throw refusalError(this.cfg, { status: res.status, headers: { get: (n: string) => res.header(n) } }, answer.url, this.ctx, errorText(text), !answer.crossOrigin);
        } catch (err) {
          // Whatever arrived before the failure is good data: write it, keep it for the resume.
          answer?.connection.destroy();
          await sink.settle().catch((e: unknown) => (err = isDiskError(e) ? e : err));
          if (usedResolved) this.resolved = undefined; // the next attempt asks the Hub again
          if (this.opts.signal?.aborted) throw this.opts.signal.reason ?? err;
          if (signal.aborted && !stall.stalled) throw signal.reason ?? err; // another part failed
          if (err instanceof RetryableError || err instanceof IntegrityError || err instanceof NetworkError || err instanceof RestartFromZero || isDiskError(err)) throw err;
          throw retry(stall.stalled ? (stall.signal.reason as Error).message : describeCause(err), { cause: err });
        } finally {
          stall.dispose();
        }
      }
    };
    await withRetries(hubRetryPolicy(this.cfg), attempt, {
      signal,
      onRetry: (e) => this.opts.onProgress?.({ type: 'retry', bytes: this.onHand(), total: this.size, attempt: e.attempt, reason: e.reason }),
    });
  }

  /** A 200 or 206 is the bytes asked for, of a file of the locked size; anything else is refused. */
  private checkAnswer(res: Http1Response, from: number, part: Part, whole: boolean): void {
    const declared = res.header('content-length');
    const length = declared === null ? undefined : Number(declared);
    if (res.status === 200) {
      // The server ignored Range: usable only when the whole file is what we want.
      if (!whole) throw new RestartFromZero(this.parallel ? 'the server ignores Range requests; downloading with one connection from the start' : 'the server ignored the resume request; downloading again from the start');
      if (length !== undefined && length !== this.size) throw new IntegrityError(this.ctx.path, `${this.size} bytes`, `${length} bytes`);
      return;
    }
    const range = parseContentRange(res.header('content-range'));
    if (!range || range.start !== from || range.end >= part.end) {
      throw new NetworkError(`server answered a request for bytes ${from}-${part.end - 1} of ${this.ctx.path} with range ${res.header('content-range')}`, { url: this.url });
    }
    if (range.total !== undefined && range.total !== this.size) throw new IntegrityError(this.ctx.path, `${this.size} bytes`, `${range.total} bytes`);
    if (length !== undefined && length !== range.end - range.start + 1) {
      throw new NetworkError(`server sent Content-Length ${length} for range ${res.header('content-range')} of ${this.ctx.path}`, { url: this.url });
    }
  }

  /**
   * GET on pooled connections, redirects followed by hand with the Hub's rule: the token goes to the
   * Hub's origin only, so a CDN never sees it. Starts from the URL the Hub last redirected to, if any.
   */
  private async openFollowing(pool: Http1Pool, range: string | undefined, signal: AbortSignal): Promise<Answer> {
    let current = this.resolved ?? this.url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const crossOrigin = !sameOrigin(current, this.cfg.endpoint);
      const headers: Record<string, string> = { 'user-agent': 'bake (+@huggingface/hub)', 'accept-encoding': 'identity' };
      if (range) headers.range = range;
      if (this.cfg.token && !crossOrigin) headers.authorization = `Bearer ${this.cfg.token}`;
      const { response, connection } = await pool.get(new URL(current), headers, signal);
      const location = response.header('location');
      if (response.status >= 300 && response.status < 400 && location) {
        // Read a small redirect body so the connection can serve the next request; drop a big one.
        const length = Number(response.header('content-length') ?? NaN);
        if (length <= 64 * 1024) await response.text(64 * 1024, signal);
        else response.discard();
        pool.release(connection);
        current = new URL(location, current).toString();
        continue;
      }
      if (current !== this.url && response.status >= 200 && response.status < 300) this.resolved = current;
      return { response, connection, url: current, crossOrigin };
    }
    throw new NetworkError(`too many redirects from ${this.url}`, { url: this.url });
  }

  /** The error a part ends with once its retries are spent. */
  private gaveUp(reason: string, status?: number): NetworkError {
    if (status !== undefined) {
      return new NetworkError(`download of ${this.ctx.path} from ${this.ctx.repo} failed after ${this.cfg.retries} retries: ${reason}`, {
        url: this.url,
        status,
        field: 'repo',
        hint: 'the Hub is rate-limiting or failing; try again later',
      });
    }
    return unreachableError(this.cfg, this.url, this.ctx, new Error(reason));
  }

  // ---- called by the sinks --------------------------------------------------------------------------

  /**
   * `bytes` (a batch of `part` at file offset `at`) were received: hashed now if in order, written once
   * `after` (the lane's previous write) is done, so a part's bytes reach the disk in order.
   */
  submit(part: Part, at: number, bytes: Uint8Array, after: Promise<void>): Promise<void> {
    this.received += bytes.length;
    this.taken += bytes.length;
    part.taken += bytes.length;
    this.hasher.offer(at, bytes);
    this.report();
    return after.then(() => writeAll(this.fh, bytes, at)).then(() => {
      part.done = Math.max(part.done, at + bytes.length - part.start);
      this.written += bytes.length;
      this.flusher.grown(this.written);
      this.hasher.kick();
    });
  }

  private onHand(): number {
    return this.taken;
  }

  private report(): void {
    const at = this.onHand();
    if (at - this.lastReported < PROGRESS_STEP && at !== this.size) return;
    this.lastReported = at;
    this.opts.onProgress?.({ type: 'progress', bytes: at, total: this.size });
  }

  /** Records how far each part got (parallel downloads only): at most once a second, or now when `force`. */
  private async recordProgress(force: boolean): Promise<void> {
    if (!this.parallel && !(await stat(this.sidecarPath).then(() => true, () => false))) return;
    if (!force && Date.now() - this.sidecarAt < SIDECAR_EVERY_MS) return;
    await this.writeSidecar();
  }

  private writeSidecar(): Promise<void> {
    this.sidecarAt = Date.now();
    const record = JSON.stringify({ v: 1, size: this.size, parts: this.parts.map((p) => [p.start, p.end, p.done]) });
    // No fsync: the digest at the end, not this record, decides whether the bytes are right.
    this.sidecarWriting = this.sidecarWriting.then(async () => {
      const tmp = tempPathFor(this.sidecarPath);
      await writeFile(tmp, record);
      await rename(tmp, this.sidecarPath);
    });
    return this.sidecarWriting;
  }

  /** Verified: on disk for good, then renamed into place. */
  async commit(finalPath: string): Promise<void> {
    await this.flusher.sync();
    await this.fh.close();
    await rename(this.incompletePath, finalPath);
    await this.sidecarWriting.catch(() => undefined);
    await rm(this.sidecarPath, { force: true });
  }

  /** Failed: keep the partial file for the next run to resume, unless its content is known to be wrong. */
  async close(err: unknown): Promise<void> {
    await this.flusher.settle();
    await this.fh.close().catch(() => undefined);
    await this.sidecarWriting.catch(() => undefined);
    if (err instanceof IntegrityError) {
      await rm(this.incompletePath, { force: true });
      await rm(this.sidecarPath, { force: true });
    }
  }
}

interface Answer {
  response: Http1Response;
  connection: Http1Connection;
  url: string;
  crossOrigin: boolean;
}

/** A connection's batch buffers: one fills from the socket while the others are written. */
class LaneBuffers {
  readonly buffers = [Buffer.allocUnsafeSlow(BATCH_BYTES), Buffer.allocUnsafeSlow(BATCH_BYTES)];
  /** The write of each buffer in flight, if any. */
  readonly writing: (Promise<void> | undefined)[] = [undefined, undefined];
  current = 0;
  /** The last write handed to the file (errors are reported through `writing`). */
  chain: Promise<void> = Promise.resolve();

  /**
   * Moves to a buffer no write holds (allocating one more, up to MAX_BATCHES, when all are busy); when
   * none can be had, to the one written longest ago, returning its write to wait for.
   */
  advance(): Promise<void> | undefined {
    const n = this.buffers.length;
    for (let k = 1; k <= n; k++) {
      const i = (this.current + k) % n;
      if (!this.writing[i]) {
        this.current = i;
        return undefined;
      }
    }
    if (n < MAX_BATCHES) {
      this.buffers.push(Buffer.allocUnsafeSlow(BATCH_BYTES));
      this.writing.push(undefined);
      this.current = n;
      return undefined;
    }
    this.current = (this.current + 1) % n; // writes finish in order: the next one is the oldest
    return this.writing[this.current];
  }
}

/**
 * Where one answer's body goes: the current batch buffer of the lane. A full batch (or the end of the
 * part) is hashed and written from where it is; reading pauses while both buffers are being written.
 */
class PartSink implements BodySink {
  response?: Http1Response;
  private fill = 0;
  private error?: unknown;

  constructor(private readonly transfer: Transfer, private readonly part: Part, private readonly lane: LaneBuffers, private readonly stall: StallTimer) {}

  region(): Uint8Array {
    const buf = this.lane.buffers[this.lane.current]!;
    // (After a pause the buffer here may still be in its write: the reader is paused until it is done.)
    // Never past the part's end: a server sending more than asked fails in the HTTP layer, not in our file.
    const left = this.part.end - this.part.start - this.part.taken - this.fill;
    return buf.subarray(this.fill, this.fill + Math.max(1, Math.min(buf.length - this.fill, left)));
  }

  filled(n: number): boolean {
    this.stall.touch();
    this.fill += n;
    const left = this.part.end - this.part.start - this.part.taken - this.fill;
    if (left < 0) throw new HttpProtocolError(`more bytes than the part holds`);
    if (BATCH_BYTES - this.fill >= MIN_READ && left > 0) return true;
    const wait = this.flush();
    if (!wait) return true;
    // Every buffer is being written: wait for the oldest.
    void wait.then(() => this.response?.resume(), () => undefined);
    return false;
  }

  /** Hands the current batch to the transfer (hash, write) and switches buffers; returns a write to wait for first. */
  private flush(): Promise<void> | undefined {
    if (this.fill === 0) return undefined;
    const i = this.lane.current;
    const at = this.part.start + this.part.taken;
    const write = this.transfer.submit(this.part, at, this.lane.buffers[i]!.subarray(0, this.fill), this.lane.chain);
    this.lane.chain = write.catch(() => undefined);
    this.fill = 0;
    const tracked = write.then(() => {
      if (this.lane.writing[i] === tracked) this.lane.writing[i] = undefined;
    });
    tracked.catch((err: unknown) => {
      this.error ??= err;
      // A write that failed (disk full...) ends the answer: nothing more can be kept.
      this.response?.discard();
    });
    this.lane.writing[i] = tracked;
    return this.lane.advance();
  }

  /** What was received is written (or the write error is thrown). */
  async settle(): Promise<void> {
    this.flush();
    await Promise.all(this.lane.writing.map((w) => w?.catch(() => undefined)));
    if (this.error !== undefined) throw this.error;
  }
}

/**
 * sha256 (and git sha1) of the file in order. `offer` hashes a batch from memory when it starts where
 * the hash has reached; otherwise the bytes are read back from the file once written (`kick`). Only one
 * of the two runs at a time.
 */
class InOrderHasher {
  /** Bytes [0, pos) are hashed. */
  pos = 0;
  private busy = false;
  private index = 0;
  private readonly buffer = Buffer.allocUnsafeSlow(HASH_READ);
  private running: Promise<void> = Promise.resolve();
  private failure?: unknown;

  constructor(private readonly fh: FileHandle, private readonly parts: Part[], readonly hashes: ContentHashes) {}

  offer(at: number, bytes: Uint8Array): void {
    if (this.busy || at !== this.pos) return;
    this.hashes.update(bytes);
    this.pos += bytes.length;
  }

  /** Reads back whatever is on disk right after `pos`. */
  kick(): void {
    if (this.busy || !this.readable()) return;
    this.busy = true;
    this.running = (async () => {
      try {
        while (this.readable()) {
          const part = this.parts[this.index]!;
          const n = Math.min(HASH_READ, part.start + part.done - this.pos);
          const { bytesRead } = await this.fh.read(this.buffer, 0, n, this.pos);
          if (bytesRead <= 0) throw new Error(`read-back of ${n} bytes at ${this.pos} returned ${bytesRead}`);
          this.hashes.update(this.buffer.subarray(0, bytesRead));
          this.pos += bytesRead;
        }
      } catch (err) {
        this.failure ??= err;
      } finally {
        this.busy = false;
      }
    })();
  }

  /** Whether bytes at `pos` are on disk and not yet hashed (advancing past finished parts). */
  private readable(): boolean {
    if (this.failure !== undefined) return false;
    while (this.index < this.parts.length && this.pos >= this.parts[this.index]!.end) this.index++;
    const part = this.parts[this.index];
    return part !== undefined && this.pos < part.start + part.done;
  }

  /** Every part is on disk: hash what is left. */
  async finish(): Promise<void> {
    for (;;) {
      await this.running;
      if (this.failure !== undefined) throw this.failure;
      if (!this.readable()) break;
      this.kick();
    }
    const size = this.parts.length > 0 ? this.parts[this.parts.length - 1]!.end : 0;
    if (this.pos !== size) throw new Error(`internal: hashed ${this.pos} of ${size} bytes`);
  }
}

/** A sidecar's parts, when it describes a download of this size consistent with the file on disk. */
async function readSidecar(path: string, size: number, fileSize: number): Promise<Part[] | undefined> {
  try {
    const rec = JSON.parse(await readFile(path, 'utf8')) as { v?: unknown; size?: unknown; parts?: unknown };
    if (rec.v !== 1 || rec.size !== size || !Array.isArray(rec.parts) || rec.parts.length === 0) return undefined;
    const parts: Part[] = [];
    let at = 0;
    for (const p of rec.parts as unknown[]) {
      if (!Array.isArray(p) || p.length !== 3 || !p.every((x) => Number.isSafeInteger(x) && x >= 0)) return undefined;
      const [start, end, done] = p as number[];
      if (start !== at || end! <= start! || end! > size || done! > end! - start! || start! + done! > fileSize) return undefined;
      parts.push({ start: start!, end: end!, done: done!, taken: done! });
      at = end!;
    }
    return at === size ? parts : undefined;
  } catch {
    return undefined;
  }
}

function mismatch(expect: ExpectedContent, sha256: string, gitSha1: string | undefined): { expected: string; actual: string } | undefined {
  if (expect.sha256 && expect.sha256 !== sha256) return { expected: `sha256:${expect.sha256}`, actual: `sha256:${sha256}` };
  if (expect.gitSha1 && expect.gitSha1 !== gitSha1) return { expected: `git-sha1:${expect.gitSha1}`, actual: `git-sha1:${gitSha1}` };
  return undefined;
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

