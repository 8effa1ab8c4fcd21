// Spreads row quantization over worker_threads: a tensor is cut into chunks of whole rows, each chunk is
// quantized by whichever worker is free, and the results are stitched back in row order. With one thread
// (or a tiny tensor) the work runs inline: a worker round-trip costs more than it saves.
import { Worker } from 'node:worker_threads';
import { ggmlTypeByName, rowBytes } from './types.js';

/** Rows are grouped so a chunk holds at least this many values (llama-quantize uses 32 * 512). */
const MIN_CHUNK_VALUES = 32 * 512;
/** Below this many values a tensor is quantized inline. */
const INLINE_VALUES = 64 * 1024;

interface Pending {
  resolve: (out: Uint8Array) => void;
  reject: (err: Error) => void;
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
  private readonly idle: Worker[] = [];
  private readonly waiting: (() => void)[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private started = false;

  constructor(readonly threads: number) {}

  /** Workers start on the first tensor big enough to need them: small models never pay their start-up. */
  private start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.threads; i++) {
      const w = spawnWorker();
      w.on('message', (msg: { id: number; out?: Uint8Array; error?: string }) => {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        this.release(w);
        if (!p) return;
        if (msg.error !== undefined) p.reject(new Error(msg.error));
        else p.resolve(msg.out!);
      });
      w.on('error', (err) => {
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private release(w: Worker): void {
    this.idle.push(w);
    this.waiting.shift()?.();
  }

  private async acquire(): Promise<Worker> {
    while (this.idle.length === 0) await new Promise<void>((r) => this.waiting.push(r));
    return this.idle.pop()!;
  }

  private async run(typeName: string, src: Float32Array, outBytes: number): Promise<Uint8Array> {
    const w = await this.acquire();
    const id = this.nextId++;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, typeName, src, outBytes }, [src.buffer as ArrayBuffer]);
    });
  }

  /** Quantizes a row-major tensor of rows of `rowLength` values into `typeName`. */
  async quantize(typeName: string, data: Float32Array, rowLength: number): Promise<Uint8Array> {
    const type = ggmlTypeByName(typeName);
    if (!type) throw new Error(`unknown ggml type ${typeName}`);
    const perRow = rowBytes(type, rowLength);
    if (perRow === undefined) throw new Error(`rows of ${rowLength} values do not split into ${typeName} blocks of ${type.blockSize}`);
    const rows = data.length / rowLength;
    const out = new Uint8Array(Buffer.allocUnsafeSlow(rows * perRow).buffer, 0, rows * perRow); // every byte is written below
    if (this.threads < 2 || data.length <= INLINE_VALUES) {
      type.quantize(data, out);
      return out;
    }
    this.start();
    const rowsPerChunk = Math.max(1, Math.ceil(MIN_CHUNK_VALUES / rowLength), Math.ceil(rows / (this.threads * 8)));
    const jobs: Promise<void>[] = [];
    for (let r = 0; r < rows; r += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, rows - r);
      // Copy the chunk so it can be transferred (the source buffer stays usable).
      const chunk = data.slice(r * rowLength, (r + n) * rowLength);
      const at = r * perRow;
      jobs.push(this.run(typeName, chunk, n * perRow).then((bytes) => out.set(bytes, at)));
    }
    await Promise.all(jobs);
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
    this.idle.length = 0;
  }
}
