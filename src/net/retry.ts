// One retry policy for everything bake fetches over the network (Hub API calls, Hub downloads, registry
// requests): which failures are worth another attempt, how long to wait before it (exponential backoff
// with jitter, or the server's Retry-After), and how many attempts a request gets.
//
// An attempt throws RetryableError for a failure worth retrying and anything else for a final one.
// An attempt that made progress (bytes arrived before a cut) resets the count and is retried at once,
// so a flaky link that keeps delivering always finishes.
//
// (p-retry was considered: its delays cannot follow a server's Retry-After, nor can its budget be
// reset when an attempt made progress, and its Node 20 line is frozen at 7.x.)

export interface RetryPolicy {
  /** Attempts after the first that may fail in a row without progress. */
  retries: number;
  /** First backoff delay in ms; doubles per failure in a row. Default 500. */
  baseDelayMs?: number;
  /** Cap on one backoff delay. Default 10 s. */
  maxDelayMs?: number;
  /** Cap on a server's Retry-After. Default 60 s. */
  maxRetryAfterMs?: number;
}

/** A failure worth another attempt: network trouble, 408/429/5xx, a body cut or stalled. */
export class RetryableError extends Error {
  /** HTTP status, when the failure was an answer. */
  readonly status?: number;
  /** The server's Retry-After, in ms. */
  readonly retryAfterMs?: number;
  /** The attempt delivered something before failing: retry at once, and start counting afresh. */
  readonly progressed: boolean;
  /** What to throw instead when no attempt is left (a caller's error naming what was being fetched). */
  readonly final?: Error;

  constructor(reason: string, opts: { cause?: unknown; status?: number; retryAfter?: string | null; progressed?: boolean; final?: Error } = {}) {
    super(reason, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RetryableError';
    this.status = opts.status;
    this.retryAfterMs = parseRetryAfter(opts.retryAfter);
    this.progressed = opts.progressed ?? false;
    this.final = opts.final;
  }
}

export interface RetryEvent {
  /** Failures in a row so far (1-based). */
  attempt: number;
  reason: string;
  /** How long it waits before the next attempt. */
  delayMs: number;
  error: RetryableError;
}

export interface RetryOptions {
  signal?: AbortSignal;
  onRetry?: (e: RetryEvent) => void;
}

/** Statuses worth another attempt: timeouts, rate limits and server trouble (not 501/505: those do not change). */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/**
 * Runs `attempt` until it succeeds, throws something other than a RetryableError, or has failed
 * `policy.retries + 1` times in a row without progress; then the last failure's `final` error (or
 * the RetryableError itself) is thrown. An abort of `signal` ends it with the signal's reason.
 */
export async function withRetries<T>(policy: RetryPolicy, attempt: (n: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  let failures = 0;
  for (let n = 1; ; n++) {
    opts.signal?.throwIfAborted();
    try {
      return await attempt(n);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (!(err instanceof RetryableError)) throw err;
      failures = err.progressed ? 1 : failures + 1;
      if (failures > policy.retries) throw err.final ?? err;
      const delayMs = err.progressed && err.retryAfterMs === undefined ? 0 : retryDelayMs(policy, failures, err.retryAfterMs);
      opts.onRetry?.({ attempt: failures, reason: err.message, delayMs, error: err });
      await sleep(delayMs, opts.signal);
    }
  }
}

/** Delay before retry number `failures` (1-based): the server's Retry-After when sent, else jittered exponential backoff. */
export function retryDelayMs(policy: RetryPolicy, failures: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxRetryAfterMs ?? 60_000);
  const base = policy.baseDelayMs ?? 500;
  const exp = Math.min(base * 2 ** (failures - 1), policy.maxDelayMs ?? 10_000);
  return Math.round(exp / 2 + Math.random() * (exp / 2)); // jitter: parallel requests do not retry in step
}

/** Retry-After as ms: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const when = Date.parse(v);
  return Number.isNaN(when) ? undefined : Math.max(0, when - Date.now());
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    if (ms <= 0 && !signal) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }
    function onAbort(): void {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
