// A request that stops sending (no headers, or a body that stops mid-way) must not hang bake: a stall
// timer aborts a request when nothing has arrived for a while, however long the whole transfer takes.

/** Why a StallTimer aborted its request. */
export class StallError extends Error {
  constructor(readonly ms: number) {
    super(`no data for ${ms} ms`);
    this.name = 'StallError';
  }
}

/** An abort signal that fires `ms` after the last `touch()` (or after creation), or when `outer` aborts. */
export class StallTimer {
  private readonly ctl = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly onOuterAbort?: () => void;

  constructor(readonly ms: number, private readonly outer?: AbortSignal) {
    this.timer = setTimeout(() => this.ctl.abort(new StallError(ms)), ms);
    if (outer) {
      this.onOuterAbort = () => this.ctl.abort(outer.reason);
      if (outer.aborted) this.onOuterAbort();
      else outer.addEventListener('abort', this.onOuterAbort, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  /** Whether the timer (not the outer signal) ended the request. */
  get stalled(): boolean {
    return this.ctl.signal.aborted && this.ctl.signal.reason instanceof StallError;
  }

  /** Something arrived: start the wait again. */
  touch(): void {
    this.timer.refresh();
  }

  /** Done with the request: no more aborts. */
  dispose(): void {
    clearTimeout(this.timer);
    if (this.onOuterAbort) this.outer?.removeEventListener('abort', this.onOuterAbort);
  }
}

/** Thrown when a body is longer than the reader accepts. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`the answer is larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/**
 * Reads a fetch Response's whole body, touching `stall` for every chunk (so a body that stops arriving
 * is aborted by it) and refusing more than `limit` bytes. A cut or stalled body rejects.
 */
export async function readBodyFully(response: Response, opts: { limit: number; stall?: StallTimer }): Promise<Uint8Array> {
  if (!response.body) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let size = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      opts.stall?.touch();
      size += value.length;
      if (size > opts.limit) throw new BodyTooLargeError(opts.limit);
      parts.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    throw err;
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(parts, size);
}
