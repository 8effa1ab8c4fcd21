// Spreads row quantization over threads: a tensor is cut into chunks of whole rows and each chunk is
// quantized by whichever thread is free. Two kinds of chunk: rows of a file, which the thread reads
// into its kernel memory and writes to their place in the output file itself (FileJob), and rows
// already in memory (a tensor the converter computed), shared with the workers, which write their
// blocks in place. As in llama.cpp, the calling thread is one of the threads (`threads - 1` workers):
// a worker costs ~50 ms of CPU and ~20 MB to start. With one thread, or a tiny tensor, the work runs
// here only.
import { Worker } from 'node:worker_threads';
import { FileJobRunner, type FileJob } from './file-job.js';
import { ggmlTypeByName, rowBytes } from './types.js';

/** Rows are grouped so a chunk holds at least this many values (llama-quantize uses 32 * 512). */
const MIN_CHUNK_VALUES = 32 * 512;
/** Below this many values a tensor is quantized inline. */
const INLINE_VALUES = 64 * 1024;
/** Jobs a worker holds at once: the next one is already there when it finishes (the calling thread may be busy). */
const WORKER_QUEUE = 2;

interface Pending {
  resolve: (bytes: number) => void;
  reject: (err: Error) => void;
}

/** One chunk: `values` float32 values at byte `srcOffset` of src, blocks to byte `dstOffset` of dst. */
export interface QuantizeJob {
  id: number;
  typeName: string;
  src: SharedArrayBuffer;
  srcOffset: number;
  values: number;
  dst: SharedArrayBuffer;
  dstOffset: number;
  bytes: number;
}

/**
 * Starts worker.js beside this module. When running from TypeScript sources (tests, bench via tsx) the
 * worker is worker.ts, and the worker needs tsx's loader registered before importing it.
 */
function spawnWorker(): Worker {
  const self = import.meta.url;
  if (!self.endsWith('.ts')) return new Worker(new URL('./worker.js', self));
  const tsx = import.meta.resolve('tsx/esm/api');
  const target = new URL('./worker.ts', self).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
  return new Worker(boot, { eval: true });
}

export class QuantizePool {
  private readonly workers: Worker[] = [];
  /** Jobs sent to each worker and not answered yet. */
  private readonly load = new Map<Worker, number>();
  private readonly waiting: (() => void)[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly here = new FileJobRunner();
  private hereBusy = false;
  private nextId = 0;
  private started = false;
  private failure?: Error;

  constructor(readonly threads: number) {}

  /** Whether a tensor of `values` values is worth spreading over the threads. */
  usesWorkers(values: number): boolean {
    return this.threads >= 2 && values > INLINE_VALUES;
  }

  /**
   * Starts the workers. The caller does this as soon as it knows a tensor will need them, so their
   * start-up overlaps the first reads; small models never pay it. Until then everything runs here.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.threads - 1; i++) {
      const w = spawnWorker();
      w.on('message', (msg: { id: number; error?: string; bytes?: number }) => {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        this.load.set(w, (this.load.get(w) ?? 1) - 1);
        this.wake();
        if (!p) return;
        if (msg.error !== undefined) p.reject(new Error(msg.error));
        else p.resolve(msg.bytes ?? 0);
      });
      w.on('error', (err) => {
        this.failure = err;
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        this.wake();
      });
      this.workers.push(w);
      this.load.set(w, 0);
    }
  }

  private wake(): void {
    this.waiting.shift()?.();
  }

  /**
   * Runs a job on an idle worker, else here, else queued behind a worker's current job; waits when
   * every thread is full. A job run here yields to the event loop first, so workers' answers (and the
   * next jobs they need) go out between this thread's jobs.
   */
  private async schedule(message: (id: number) => object, here: () => number): Promise<number> {
    for (;;) {
      if (this.failure) throw this.failure;
      const byLoad = [...this.workers].sort((a, b) => this.load.get(a)! - this.load.get(b)!);
      const idle = byLoad.find((w) => this.load.get(w) === 0);
      if (idle) return this.send(idle, message);
      if (!this.hereBusy) return this.runHere(here);
      const queued = byLoad.find((w) => this.load.get(w)! < WORKER_QUEUE);
      if (queued) return this.send(queued, message);
      await new Promise<void>((r) => this.waiting.push(r));
    }
  }

  private async runHere(here: () => number): Promise<number> {
    this.hereBusy = true;
    try {
      await new Promise<void>((r) => setImmediate(r));
      return here();
    } finally {
      this.hereBusy = false;
      this.wake();
    }
  }

  private send(w: Worker, message: (id: number) => object): Promise<number> {
    const id = this.nextId++;
    this.load.set(w, this.load.get(w)! + 1);
    return new Promise<number>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage(message(id));
    });
  }

  /** Runs a file job on the next free thread; resolves with the bytes it wrote. */
  runFile(job: FileJob): Promise<number> {
    return this.schedule((id) => ({ kind: 'file', id, job }), () => this.here.run(job));
  }

  /**
   * Quantizes a row-major tensor of rows of `rowLength` values into `typeName`: into `into` when given
   * (exactly the encoded size, in shared memory when workers are used), else a new buffer.
   */
  async quantize(typeName: string, data: Float32Array, rowLength: number, into?: Uint8Array): Promise<Uint8Array> {
    const type = ggmlTypeByName(typeName);
    if (!type) throw new Error(`unknown ggml type ${typeName}`);
    const perRow = rowBytes(type, rowLength);
    if (perRow === undefined) throw new Error(`rows of ${rowLength} values do not split into ${typeName} blocks of ${type.blockSize}`);
    const rows = data.length / rowLength;
    if (into && into.length !== rows * perRow) throw new RangeError(`quantize: ${typeName} output needs ${rows * perRow} bytes, got ${into.length}`);
    if (!this.usesWorkers(data.length)) {
      const out = into ?? new Uint8Array(Buffer.allocUnsafeSlow(rows * perRow).buffer, 0, rows * perRow); // every byte is written
      type.quantize(data, out);
      return out;
    }
    this.start();
    // Sources read by bake's own readers are already shared; anything else is copied in once.
    let src = data;
    if (!(data.buffer instanceof SharedArrayBuffer)) {
      src = new Float32Array(new SharedArrayBuffer(data.byteLength));
      src.set(data);
    }
    const out = into?.buffer instanceof SharedArrayBuffer ? into : new Uint8Array(new SharedArrayBuffer(rows * perRow));
    const rowsPerChunk = Math.max(1, Math.ceil(MIN_CHUNK_VALUES / rowLength), Math.ceil(rows / (this.threads * 8)));
    const jobs: Promise<number>[] = [];
    for (let r = 0; r < rows; r += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, rows - r);
      const job: Omit<QuantizeJob, 'id'> = {
        typeName,
        src: src.buffer as SharedArrayBuffer,
        srcOffset: src.byteOffset + r * rowLength * 4,
        values: n * rowLength,
        dst: out.buffer as SharedArrayBuffer,
        dstOffset: out.byteOffset + r * perRow,
        bytes: n * perRow,
      };
      jobs.push(this.schedule((id) => ({ kind: 'rows', id, ...job }), () => {
        type.quantize(new Float32Array(job.src, job.srcOffset, job.values), new Uint8Array(job.dst, job.dstOffset, job.bytes));
        return job.bytes;
      }));
    }
    await Promise.all(jobs);
    if (into && into !== out) into.set(out);
    return into ?? out;
  }

  /** Lets every worker close its files (after its jobs), then ends them. */
  async close(): Promise<void> {
    this.here.close();
    // A worker answers in order: its close comes after the jobs it holds.
    await Promise.all(this.workers.map((w) => this.send(w, (id) => ({ kind: 'close', id })).catch(() => undefined)));
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
    this.load.clear();
  }
}

/**
 * Shared buffers reused round-robin. Fresh memory costs a page fault per 4 KiB, more than filling it,
 * so the tensors of a file pass through the same few buffers; one grows when a bigger tensor comes.
 */
export class SharedBufferRing {
  private readonly buffers: (SharedArrayBuffer | undefined)[];
  private turn = 0;

  constructor(size: number) {
    this.buffers = new Array<SharedArrayBuffer | undefined>(size).fill(undefined);
  }

  /** The next buffer in turn, as a view of exactly `bytes` bytes (4-aligned for float32 views). */
  next(bytes: number): Uint8Array {
    const i = this.turn;
    this.turn = (this.turn + 1) % this.buffers.length;
    let b = this.buffers[i];
    if (!b || b.byteLength < bytes) this.buffers[i] = b = new SharedArrayBuffer(Math.max(bytes, 4));
    return new Uint8Array(b, 0, bytes);
  }
}
