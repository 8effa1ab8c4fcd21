// A small HTTP/1.1 client for large response bodies: the socket reads straight into memory the caller
// hands it (net/tls `onread` with a buffer generator), so a body travels from the kernel into the
// caller's batch buffer without a per-read allocation, stream, event or promise.
//
// Why not node:http or undici: both allocate a fresh 64 KiB buffer per socket read and push it through a
// stream. On this project's machines that alone cost 0.7-1.1 CPU-s per GiB received (measured with a
// loopback server: node:http 'data' events 0.35-0.56 s per 512 MiB, undici's request() and dispatch()
// the same, the same socket read into a caller's 1 MiB buffer 0.1 s), as much as curl's whole download.
// No npm client reads into caller memory. Only what file downloads need is here: GET, Content-Length,
// chunked and close-delimited bodies, keep-alive without pipelining, interim 1xx answers skipped. API
// calls stay on fetch.
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

/** The server broke HTTP/1.1 (a bad status line, a head too large, bytes past the body...). */
export class HttpProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HttpProtocolError';
  }
}

/** The connection ended before the answer was complete. */
export class ConnectionClosedError extends Error {
  constructor(message: string, readonly beforeAnyByte = false) {
    super(message);
    this.name = 'ConnectionClosedError';
  }
}

/**
 * Where a body goes. `region()` is the memory the next socket read may fill (from its start, at least one
 * byte); `filled(n)` says that `n` body bytes now sit at the start of the last region returned. Returning
 * false from `filled` pauses reading until the response's `resume()`.
 */
export interface BodySink {
  region(): Uint8Array;
  filled(n: number): boolean;
}

/** Largest response head accepted (status line and headers). */
const HEAD_MAX = 64 * 1024;
/** A pooled connection idle longer than this is not reused: servers close idle ones (node: after 5 s). */
const IDLE_REUSE_MS = 2_000;

type State = 'connecting' | 'idle' | 'head' | 'head-done' | 'body' | 'closed';

interface Framing {
  kind: 'length' | 'chunked' | 'close' | 'none';
  /** length: body bytes still to come. */
  remaining: number;
}

/**
 * One connection to one origin; requests run one at a time (no pipelining).
 *
 * Node reads the socket into whatever view the buffer generator returned after the previous read, so a
 * read lands where the connection pointed before it knew what comes next. What keeps that safe: the
 * generator returns the sink's region only while the sink is reading and nothing is queued for it;
 * otherwise a private buffer (`head` for an answer's head and between requests, `land` for body bytes
 * the sink cannot take yet). Body bytes that land in a private buffer are handed to the sink or, when it
 * is paused, copied into a queue (a TLS socket may deliver a little after a pause; the bytes that came
 * with the head wait there too). So a sink's region is only written while its body is being read.
 */
export class Http1Connection {
  private socket!: Socket;
  private state: State = 'connecting';
  private readonly head = Buffer.allocUnsafe(HEAD_MAX);
  private readonly land = Buffer.allocUnsafe(HEAD_MAX);
  /** The head being read: its bytes are head[0, headFill). */
  private headFill = 0;
  /** Body bytes (framing removed) waiting for the sink. */
  private queue: Buffer[] = [];
  /** The view the socket reads into next (what the buffer generator last returned). */
  private target?: Uint8Array;
  private sink?: BodySink;
  private paused = false;
  private framing: Framing = { kind: 'none', remaining: 0 };
  private chunk = new ChunkDecoder();
  /** The framing says the body is over (delivered once the queue is empty). */
  private complete = false;
  private keepAlive = false;
  private anyByte = false;
  private idleSince = 0;
  private requests = 0;
  private onHead?: { resolve: (r: Http1Response) => void; reject: (e: Error) => void };
  private onBody?: { resolve: () => void; reject: (e: Error) => void };
  private failure?: Error;

  private constructor(readonly origin: string) {}

  /**
   * Opens a connection to `url`'s origin (TLS for https:, with certificate checks and SNI). `tls.ca`
   * replaces the trusted certificates (tests; NODE_EXTRA_CA_CERTS works as for any Node program).
   */
  static async open(url: URL, signal?: AbortSignal, tls: { ca?: ConnectionOptions['ca'] } = {}): Promise<Http1Connection> {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new HttpProtocolError(`unsupported protocol ${url.protocol}`);
    signal?.throwIfAborted();
    const conn = new Http1Connection(url.origin);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const onread = { buffer: () => conn.nextTarget(), callback: (n: number, buf: Uint8Array) => conn.onRead(n, buf) };
    const socket = url.protocol === 'https:'
      // tls.connect takes `onread` as net.connect does (Node >= 15), though @types/node does not say so.
      ? tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), ALPNProtocols: ['http/1.1'], ...tls, onread } as ConnectionOptions)
      : netConnect({ host, port, onread });
    conn.socket = socket;
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      const ready = url.protocol === 'https:' ? 'secureConnect' : 'connect';
      const onAbort = () => socket.destroy(signal!.reason as Error);
      const done = (err?: Error) => {
        socket.off(ready, onReady).off('error', done);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      socket.once(ready, onReady).once('error', done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    conn.state = 'idle';
    conn.idleSince = Date.now();
    socket.on('error', (err) => conn.fail(err));
    socket.on('end', () => conn.onEnd());
    socket.on('close', () => conn.onEnd());
    socket.resume(); // flowing, so that the end of the stream is seen
    return conn;
  }

  /** Whether another request may be sent on this connection. */
  get reusable(): boolean {
    return this.state === 'idle' && this.keepAlive && !this.socket.destroyed && Date.now() - this.idleSince < IDLE_REUSE_MS;
  }

  /** Whether this connection served a request before (a close before any answer is then a stale connection). */
  get used(): boolean {
    return this.requests > 1;
  }

  destroy(err?: Error): void {
    this.fail(err ?? new ConnectionClosedError('connection closed by the client'));
  }

  /**
   * Sends a GET and resolves with the answer's head; its body is then read with `readBody`, `text` or
   * `discard`. `path` is the URL's path and query; `headers` must not hold Host (it is `host`).
   */
  request(host: string, path: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Http1Response> {
    if (this.state !== 'idle') return Promise.reject(this.failure ?? new Error(`Http1Connection: request while ${this.state}`));
    let head: string;
    try {
      const lines = [`GET ${checkValue(path, 'path')} HTTP/1.1`, `host: ${checkValue(host, 'host')}`];
      for (const [name, value] of Object.entries(headers)) lines.push(`${checkName(name)}: ${checkValue(value, name)}`);
      head = lines.join('\r\n') + '\r\n\r\n';
    } catch (err) {
      return Promise.reject(err);
    }
    this.requests++;
    this.state = 'head';
    this.headFill = 0;
    this.anyByte = false;
    this.complete = false;
    this.queue = [];
    const p = new Promise<Http1Response>((resolve, reject) => (this.onHead = { resolve, reject }));
    this.watch(signal, p);
    this.socket.write(head);
    this.socket.resume();
    return p;
  }

  /** Aborting `signal` destroys the connection (a half-read answer cannot be resumed on it). */
  private watch(signal: AbortSignal | undefined, until: Promise<unknown>): void {
    if (!signal) return;
    const onAbort = () => this.fail(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    until.then(() => signal.removeEventListener('abort', onAbort), () => signal.removeEventListener('abort', onAbort));
  }

  // ---- the socket's reads -----------------------------------------------------------------------

  /** The buffer generator: where the socket's next read goes. */
  private nextTarget(): Uint8Array {
    let t: Uint8Array | undefined;
    if (this.state === 'head') t = this.head.subarray(this.headFill);
    else if (this.state === 'body' && this.sink && !this.paused && this.queue.length === 0 && !this.complete) {
      try {
        t = this.sink.region();
      } catch (err) {
        this.fail(err as Error);
      }
      if (t?.length === 0) t = undefined;
    } else if (this.state !== 'body' && this.state !== 'head-done') {
      t = this.head; // between answers: the next head lands in place
    }
    t ??= this.land;
    this.target = t;
    return t;
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    try {
      this.anyByte = true;
      if (this.state === 'head') {
        if (buf.buffer !== this.head.buffer || buf.byteOffset !== this.head.byteOffset + this.headFill) {
          // The first read of an answer may land where the connection pointed before the request.
          if (this.headFill + n > HEAD_MAX) throw new HttpProtocolError(`response head larger than ${HEAD_MAX} bytes`);
          this.head.set(buf.subarray(0, n), this.headFill);
        }
        this.headFill += n;
        return this.parseHead();
      }
      if (this.state === 'body' || this.state === 'head-done') {
        const inSink = this.state === 'body' && buf === this.target && buf !== this.land && buf !== this.head && this.sink !== undefined;
        const body = this.frame(buf, n);
        if (inSink) {
          // The fast path: the bytes are where the sink wants them.
          if (body > 0 && this.sink!.filled(body) === false && !this.complete) this.paused = true;
        } else if (body > 0) {
          this.queue.push(Buffer.from(buf.subarray(0, body)));
        }
        return this.pump();
      }
      // Bytes while no request is out: a broken server. Nothing sane to do but close.
      throw new HttpProtocolError(`the server sent ${n} bytes with no request outstanding`);
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
  }

  private parseHead(): boolean {
    for (;;) {
      const end = this.head.subarray(0, this.headFill).indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.headFill >= HEAD_MAX) throw new HttpProtocolError(`response head larger than ${HEAD_MAX} bytes`);
        return true;
      }
      const parsed = parseHead(this.head.toString('latin1', 0, end));
      const rest = end + 4;
      if (parsed.status >= 100 && parsed.status < 200) {
        // An interim answer (100 Continue, 103 Early Hints): the real one follows.
        this.head.copyWithin(0, rest, this.headFill);
        this.headFill -= rest;
        continue;
      }
      this.keepAlive = parsed.keepAlive;
      this.framing = framingOf(parsed.status, parsed.headers);
      this.chunk = new ChunkDecoder();
      if (this.framing.kind === 'close') this.keepAlive = false;
      this.state = 'head-done';
      // Body bytes that came with the head wait in the queue.
      const leftover = this.head.subarray(rest, this.headFill);
      if (this.framing.kind === 'none' || (this.framing.kind === 'length' && this.framing.remaining === 0)) {
        if (leftover.length > 0) throw new HttpProtocolError('bytes after a response without a body');
        this.complete = true;
      } else if (leftover.length > 0) {
        const body = this.frame(leftover, leftover.length);
        if (body > 0) this.queue.push(Buffer.from(leftover.subarray(0, body)));
      }
      const res = new Http1Response(this, parsed.status, parsed.headers);
      const h = this.onHead;
      this.onHead = undefined;
      if (this.complete && this.queue.length === 0) {
        this.finishBody();
        h?.resolve(res);
        return true;
      }
      h?.resolve(res);
      // Wait for the caller to say where the body goes.
      return false;
    }
  }

  /** Applies the body's framing to `n` bytes at the start of `buf`; returns the body bytes left there. */
  private frame(buf: Uint8Array, n: number): number {
    const f = this.framing;
    if (this.complete) throw new HttpProtocolError(`${n} bytes after the end of the body`);
    if (f.kind === 'length') {
      if (n > f.remaining) throw new HttpProtocolError(`${n - f.remaining} bytes past the announced Content-Length`);
      f.remaining -= n;
      if (f.remaining === 0) this.complete = true;
      return n;
    }
    if (f.kind === 'chunked') {
      const body = this.chunk.decode(buf, n);
      if (this.chunk.done) this.complete = true;
      return body;
    }
    if (f.kind === 'close') return n;
    throw new HttpProtocolError('bytes after a response without a body');
  }

  /**
   * Hands queued bytes to the sink while it takes them, and ends the body once the framing said it is
   * over and nothing is queued. Returns whether the socket may keep reading.
   */
  private pump(): boolean {
    while (this.queue.length > 0 && !this.paused && this.sink && this.state === 'body') {
      const region = this.sink.region();
      if (region.length === 0) throw new HttpProtocolError('more body bytes than the reader has room for');
      const first = this.queue[0]!;
      const n = Math.min(region.length, first.length);
      region.set(first.subarray(0, n));
      if (n === first.length) this.queue.shift();
      else this.queue[0] = first.subarray(n);
      if (this.sink.filled(n) === false) this.paused = true;
    }
    if (this.state === 'body' && this.complete && this.queue.length === 0) {
      this.finishBody();
      return true;
    }
    return this.state === 'body' && !this.paused;
  }

  private finishBody(): void {
    this.state = 'idle';
    this.idleSince = Date.now();
    this.sink = undefined;
    this.paused = false;
    this.queue = [];
    if (!this.keepAlive) this.socket.end();
    const b = this.onBody;
    this.onBody = undefined;
    b?.resolve();
  }

  private onEnd(): void {
    if (this.state === 'closed') return;
    if (this.framing.kind === 'close' && (this.state === 'body' || this.state === 'head-done') && !this.complete) {
      // A close-delimited body ends with the connection, once what is queued is delivered.
      this.complete = true;
      this.keepAlive = false;
      this.resumeAfterPause();
      return;
    }
    if (this.state === 'idle' || this.state === 'head-done' && this.complete) {
      this.state = this.state === 'idle' ? 'closed' : this.state;
      return;
    }
    const what = this.state === 'head' || this.state === 'connecting'
      ? 'before a complete answer'
      : this.framing.kind === 'length' ? `with ${this.framing.remaining} bytes of the body missing` : 'before the end of the body';
    this.fail(new ConnectionClosedError(`the server closed the connection ${what}`, this.state === 'head' && !this.anyByte && this.used));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.state = 'closed';
    this.keepAlive = false;
    if (this.socket && !this.socket.destroyed) this.socket.destroy();
    const h = this.onHead;
    const b = this.onBody;
    this.onHead = this.onBody = undefined;
    h?.reject(err);
    b?.reject(err);
  }

  /** Delivers what is queued and, unless paused or complete, lets the socket read again. */
  private resumeAfterPause(): void {
    try {
      if (this.pump() && this.state === 'body' && !this.complete) this.socket.resume();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  // ---- used by Http1Response ----------------------------------------------------------------------

  /** @internal */
  startBody(sink: BodySink): Promise<void> {
    if (this.state === 'idle') return Promise.resolve(); // no body: already complete
    if (this.state !== 'head-done') return Promise.reject(this.failure ?? new Error(`Http1Connection: body read while ${this.state}`));
    this.sink = sink;
    this.state = 'body';
    this.paused = false;
    const p = new Promise<void>((resolve, reject) => (this.onBody = { resolve, reject }));
    p.catch(() => undefined);
    this.resumeAfterPause();
    return p;
  }

  /** @internal */
  resumeBody(): void {
    if (this.state !== 'body' || !this.paused) return;
    this.paused = false;
    this.resumeAfterPause();
  }

  /** @internal */
  watchBody(signal: AbortSignal | undefined, p: Promise<unknown>): void {
    this.watch(signal, p);
  }

  /** @internal */
  get bodyDone(): boolean {
    return this.state === 'idle';
  }
}

/** One answer. Read its body once: `readBody` (into a sink), `text` (small error bodies) or `discard`. */
export class Http1Response {
  constructor(private readonly conn: Http1Connection, readonly status: number, readonly headers: Readonly<Record<string, string>>) {}

  header(name: string): string | null {
    return this.headers[name.toLowerCase()] ?? null;
  }

  /** Streams the body into `sink`; resolves when it is complete. An abort of `signal` closes the connection. */
  readBody(sink: BodySink, signal?: AbortSignal): Promise<void> {
    const p = this.conn.startBody(sink);
    this.conn.watchBody(signal, p);
    return p;
  }

  /** Resumes a body paused by the sink's `filled` returning false. */
  resume(): void {
    this.conn.resumeBody();
  }

  /** The body as text, at most `limit` bytes (the connection is closed when there is more). */
  async text(limit = 4096, signal?: AbortSignal): Promise<string> {
    const buf = Buffer.allocUnsafe(limit);
    let fill = 0;
    const ctl = new AbortController();
    const sink: BodySink = {
      region: () => (fill < limit ? buf.subarray(fill) : Buffer.allocUnsafe(4096)),
      filled: (n) => {
        fill = Math.min(limit, fill + n);
        if (fill >= limit) ctl.abort(new Error('enough'));
        return true;
      },
    };
    try {
      await this.readBody(sink, signal ? AbortSignal.any([signal, ctl.signal]) : ctl.signal);
    } catch {
      // a cut or oversized error body is still worth showing
    }
    return buf.toString('utf8', 0, fill);
  }

  /** Drops the body: the connection is closed unless the body is already complete. */
  discard(): void {
    if (!this.conn.bodyDone) this.conn.destroy();
  }
}

/**
 * Decodes chunked transfer coding in place: the data bytes of a read are moved to its start, over the
 * chunk-size lines between them. Sizes, extensions and trailers are bounded.
 */
class ChunkDecoder {
  done = false;
  /** Data bytes left in the current chunk. */
  private left = 0;
  private phase: 'size' | 'data' | 'data-crlf' | 'trailer' = 'size';
  private line = '';
  private trailerBytes = 0;

  decode(buf: Uint8Array, n: number): number {
    let out = 0;
    let i = 0;
    while (i < n) {
      if (this.done) throw new HttpProtocolError(`${n - i} bytes after the last chunk`);
      if (this.phase === 'data') {
        const take = Math.min(this.left, n - i);
        if (out !== i) buf.copyWithin(out, i, i + take);
        out += take;
        i += take;
        this.left -= take;
        if (this.left === 0) this.phase = 'data-crlf';
        continue;
      }
      // Line-oriented phases: collect one line (bounded).
      const b = buf[i++]!;
      if (b !== 0x0a) {
        if (this.line.length >= 4096) throw new HttpProtocolError('chunk header line too long');
        this.line += String.fromCharCode(b);
        continue;
      }
      const line = this.line.replace(/\r$/, '');
      this.line = '';
      if (this.phase === 'data-crlf') {
        if (line !== '') throw new HttpProtocolError('chunk data not followed by CRLF');
        this.phase = 'size';
      } else if (this.phase === 'size') {
        const m = /^([0-9a-fA-F]{1,12})(?:[ \t]*;.*)?$/.exec(line);
        if (!m) throw new HttpProtocolError(`bad chunk size line ${JSON.stringify(line.slice(0, 40))}`);
        this.left = parseInt(m[1]!, 16);
        this.phase = this.left === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        this.done = true;
      } else if ((this.trailerBytes += line.length) > HEAD_MAX) {
        throw new HttpProtocolError(`chunked trailers larger than ${HEAD_MAX} bytes`);
      }
    }
    return out;
  }
}

interface ParsedHead {
  status: number;
  headers: Record<string, string>;
  keepAlive: boolean;
}

function parseHead(text: string): ParsedHead {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0]!);
  if (!m) throw new HttpProtocolError(`not an HTTP/1.x status line: ${JSON.stringify(lines[0]!.slice(0, 60))}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(line.slice(0, colon))) {
      throw new HttpProtocolError(`bad header line ${JSON.stringify(line.slice(0, 60))}`);
    }
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length' && headers[name] !== undefined && headers[name] !== value) {
      throw new HttpProtocolError(`two different Content-Length headers (${headers[name]}, ${value})`);
    }
    headers[name] = headers[name] !== undefined && name !== 'content-length' ? `${headers[name]}, ${value}` : value;
  }
  const connection = (headers.connection ?? '').toLowerCase();
  const keepAlive = m[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
  return { status: Number(m[2]), headers, keepAlive };
}

function framingOf(status: number, headers: Record<string, string>): Framing {
  if (status === 204 || status === 304) return { kind: 'none', remaining: 0 };
  const te = headers['transfer-encoding'];
  if (te !== undefined) {
    if (!/(^|,)\s*chunked\s*$/i.test(te)) throw new HttpProtocolError(`unsupported Transfer-Encoding ${JSON.stringify(te)}`);
    return { kind: 'chunked', remaining: 0 };
  }
  const cl = headers['content-length'];
  if (cl !== undefined) {
    if (!/^\d{1,16}$/.test(cl)) throw new HttpProtocolError(`bad Content-Length ${JSON.stringify(cl)}`);
    return { kind: 'length', remaining: Number(cl) };
  }
  return { kind: 'close', remaining: 0 };
}

function checkValue(value: string, what: string): string {
  if (/[\r\n\0]/.test(value)) throw new HttpProtocolError(`${what} holds a line break or NUL`);
  return value;
}

function checkName(name: string): string {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || name.toLowerCase() === 'host') throw new HttpProtocolError(`bad request header name ${JSON.stringify(name)}`);
  return name;
}

/**
 * Connections per origin for one transfer: a connection whose answer ended cleanly with keep-alive is
 * reused by the next request to its origin. `close()` ends them all.
 */
export class Http1Pool {
  private readonly idle = new Map<string, Http1Connection[]>();
  private readonly all = new Set<Http1Connection>();
  private closed = false;

  constructor(private readonly tls: { ca?: ConnectionOptions['ca'] } = {}) {}

  /**
   * GET `url` on a pooled connection (or a new one). A reused connection the server had already closed
   * (no byte of an answer) is replaced by a fresh one once.
   */
  async get(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<{ response: Http1Response; connection: Http1Connection }> {
    for (let tries = 0; ; tries++) {
      const conn = await this.acquire(url, signal);
      try {
        const response = await conn.request(url.host, `${url.pathname}${url.search}`, headers, signal);
        return { response, connection: conn };
      } catch (err) {
        this.drop(conn);
        if (tries === 0 && err instanceof ConnectionClosedError && err.beforeAnyByte && !signal?.aborted) continue;
        throw err;
      }
    }
  }

  /** Returns a connection after its answer was read; kept when it can serve another request. */
  release(conn: Http1Connection): void {
    if (this.closed || !conn.reusable) return this.drop(conn);
    const list = this.idle.get(conn.origin) ?? [];
    list.push(conn);
    this.idle.set(conn.origin, list);
  }

  drop(conn: Http1Connection): void {
    conn.destroy();
    this.all.delete(conn);
    const list = this.idle.get(conn.origin);
    if (list) this.idle.set(conn.origin, list.filter((c) => c !== conn));
  }

  close(): void {
    this.closed = true;
    for (const c of this.all) c.destroy();
    this.all.clear();
    this.idle.clear();
  }

  private async acquire(url: URL, signal?: AbortSignal): Promise<Http1Connection> {
    if (this.closed) throw new Error('Http1Pool: closed');
    const list = this.idle.get(url.origin) ?? [];
    while (list.length > 0) {
      const c = list.pop()!;
      if (c.reusable) return c;
      this.drop(c);
    }
    const conn = await Http1Connection.open(url, signal, this.tls);
    if (this.closed) {
      conn.destroy();
      throw new Error('Http1Pool: closed');
    }
    this.all.add(conn);
    return conn;
  }
}
