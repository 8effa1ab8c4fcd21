// The digests of a download (sha256, and the git blob sha1 for small files), fed with buffers the
// writer fills. Large files are hashed on a worker thread: hashing is about a quarter of the CPU a
// download costs in Node, and there it runs beside the socket reads and file writes rather than
// between them. Buffers are transferred (not copied) and handed back for reuse once hashed.
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

export interface Digests {
  sha256: string;
  gitSha1?: string;
}

export interface Hasher {
  /** Bytes per buffer from take(). */
  readonly bufferSize: number;
  /** Starts over (a restarted download). */
  reset(): void;
  /** A buffer to fill; waits while every buffer is still being hashed. */
  take(): Promise<ArrayBuffer>;
  /** Hashes the first `length` bytes of `buffer`, which then belongs to the hasher again. */
  update(buffer: ArrayBuffer, length: number): void;
  /** Returns a buffer taken but not filled. */
  give(buffer: ArrayBuffer): void;
  /** Digests of everything given since the last reset (in order). */
  digest(): Promise<Digests>;
  close(): Promise<void>;
}

/** Below this, a worker's start-up costs more than it saves. */
const WORKER_THRESHOLD = 32 << 20;
const BUFFER_SIZE = 4 << 20;

export function createHasher(size: number, gitSha1: boolean): Hasher {
  if (size >= WORKER_THRESHOLD) return new WorkerHasher(size, gitSha1, BUFFER_SIZE, 4);
  return new InlineHasher(size, gitSha1, Math.max(64 << 10, Math.min(BUFFER_SIZE, size)));
}

/** A pool of buffers; take() waits for one to come back when all are out. */
class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private readonly waiting: ((b: ArrayBuffer) => void)[] = [];
  constructor(
    readonly bufferSize: number,
    count: number,
  ) {
    for (let i = 0; i < count; i++) this.free.push(new ArrayBuffer(bufferSize));
  }
  take(): Promise<ArrayBuffer> {
    const b = this.free.pop();
    return b ? Promise.resolve(b) : new Promise((resolve) => this.waiting.push(resolve));
  }
  give(b: ArrayBuffer): void {
    const waiter = this.waiting.shift();
    if (waiter) waiter(b);
    else this.free.push(b);
  }
}

class InlineHasher implements Hasher {
  private sha256!: Hash;
  private sha1?: Hash;
  private readonly pool: BufferPool;
  constructor(
    private readonly size: number,
    private readonly withGitSha1: boolean,
    readonly bufferSize: number,
  ) {
    this.pool = new BufferPool(bufferSize, 2);
    this.reset();
  }
  reset(): void {
    this.sha256 = createHash('sha256');
    this.sha1 = this.withGitSha1 ? createHash('sha1').update(`blob ${this.size}\0`) : undefined;
  }
  take(): Promise<ArrayBuffer> {
    return this.pool.take();
  }
  update(buffer: ArrayBuffer, length: number): void {
    const view = new Uint8Array(buffer, 0, length);
    this.sha256.update(view);
    this.sha1?.update(view);
    this.pool.give(buffer);
  }
  give(buffer: ArrayBuffer): void {
    this.pool.give(buffer);
  }
  async digest(): Promise<Digests> {
    return { sha256: this.sha256.digest('hex'), ...(this.sha1 ? { gitSha1: this.sha1.digest('hex') } : {}) };
  }
  async close(): Promise<void> {}
}

// Plain CommonJS run with `eval`, so the worker starts the same from TypeScript (tsx) and from dist/.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let sha256, sha1;
parentPort.on('message', (m) => {
  if (m.type === 'reset') {
    sha256 = createHash('sha256');
    sha1 = m.gitSize === null ? undefined : createHash('sha1').update('blob ' + m.gitSize + '\\0');
  } else if (m.type === 'update') {
    const view = new Uint8Array(m.buffer, 0, m.length);
    sha256.update(view);
    if (sha1) sha1.update(view);
    parentPort.postMessage({ type: 'free', buffer: m.buffer }, [m.buffer]);
  } else if (m.type === 'digest') {
    parentPort.postMessage({ type: 'digest', sha256: sha256.digest('hex'), gitSha1: sha1 ? sha1.digest('hex') : undefined });
  }
});
`;

type FromWorker = { type: 'free'; buffer: ArrayBuffer } | { type: 'digest'; sha256: string; gitSha1?: string };

class WorkerHasher implements Hasher {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private readonly pool: BufferPool;
  private readonly digestWaiters: { resolve: (d: Digests) => void; reject: (e: unknown) => void }[] = [];
  private failure: unknown;

  constructor(
    private readonly size: number,
    private readonly withGitSha1: boolean,
    readonly bufferSize: number,
    buffers: number,
  ) {
    this.pool = new BufferPool(bufferSize, buffers);
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'free') this.pool.give(m.buffer);
      else this.digestWaiters.shift()?.resolve(m.gitSha1 ? { sha256: m.sha256, gitSha1: m.gitSha1 } : { sha256: m.sha256 });
    });
    this.worker.on('error', (err) => {
      this.failure = err;
      for (const w of this.digestWaiters.splice(0)) w.reject(err);
    });
    this.reset();
  }
  reset(): void {
    this.worker.postMessage({ type: 'reset', gitSize: this.withGitSha1 ? this.size : null });
  }
  async take(): Promise<ArrayBuffer> {
    if (this.failure) throw this.failure;
    return this.pool.take();
  }
  update(buffer: ArrayBuffer, length: number): void {
    this.worker.postMessage({ type: 'update', buffer, length }, [buffer]);
  }
  give(buffer: ArrayBuffer): void {
    this.pool.give(buffer);
  }
  digest(): Promise<Digests> {
    if (this.failure) return Promise.reject(this.failure);
    const result = new Promise<Digests>((resolve, reject) => this.digestWaiters.push({ resolve, reject }));
    this.worker.postMessage({ type: 'digest' });
    return result;
  }
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
