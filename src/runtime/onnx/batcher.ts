// Micro-batching: requests that arrive while the model is busy (or in the same tick) run together as one
// forward pass, up to `maxBatch` items, in arrival order. One batch per model runs at a time; the next
// one starts as soon as it ends, so a lone request waits for nothing and a busy server fills its batches.

export interface BatcherOptions<I, O> {
  /** Items (texts, pairs) per forward pass at most. */
  maxBatch: number;
  run(items: I[]): Promise<O[]>;
  /** Called with each batch's size (metrics). */
  onBatch?(size: number, seconds: number): void;
}

interface Pending<I, O> { items: I[]; resolve(out: O[]): void; reject(err: unknown): void; results: O[]; left: number; failed: boolean }

export class Batcher<I, O> {
  private queue: { item: I; owner: Pending<I, O>; slot: number }[] = [];
  private running = false;

  constructor(private readonly opts: BatcherOptions<I, O>) {}

  /** The outputs of `items`, in order; they may share forward passes with other callers' items. */
  submit(items: I[]): Promise<O[]> {
    if (items.length === 0) return Promise.resolve([]);
    return new Promise<O[]>((resolve, reject) => {
      const owner: Pending<I, O> = { items, resolve, reject, results: new Array(items.length), left: items.length, failed: false };
      items.forEach((item, slot) => this.queue.push({ item, owner, slot }));
      // The same tick's other requests join this batch.
      if (!this.running) setImmediate(() => this.drain());
    });
  }

  get pending(): number {
    return this.queue.length;
  }

  private async drain(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    const t0 = performance.now();
    try {
      const out = await this.opts.run(batch.map((b) => b.item));
      this.opts.onBatch?.(batch.length, (performance.now() - t0) / 1000);
      batch.forEach((b, i) => {
        if (b.owner.failed) return;
        b.owner.results[b.slot] = out[i]!;
        if (--b.owner.left === 0) b.owner.resolve(b.owner.results);
      });
    } catch (err) {
      // One bad batch fails the requests in it, not the server.
      for (const b of batch) {
        if (b.owner.failed) continue;
        b.owner.failed = true;
        b.owner.reject(err);
      }
      // Their other items still queued are dropped.
      this.queue = this.queue.filter((q) => !q.owner.failed);
    } finally {
      this.running = false;
      if (this.queue.length) setImmediate(() => this.drain());
    }
  }
}
