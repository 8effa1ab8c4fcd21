// Moving blobs between places without trusting them: every copy is hashed and sized on the way.
import { createHash, type Hash } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { copyFile, link, stat } from 'node:fs/promises';
import { once, type EventEmitter } from 'node:events';
import { Transform, type TransformCallback } from 'node:stream';
import type tar from 'tar-stream';
import { pipeline } from 'node:stream/promises';
import { IntegrityError } from '../../util/errors.js';
import { withTempFile } from '../../util/fs.js';

/** A pass-through that hashes and counts what flows through it. */
export class HashCounter extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  constructor(private readonly onBytes?: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

export interface BlobSource {
  digest: string;
  size: number;
  open(): NodeJS.ReadableStream | Promise<NodeJS.ReadableStream>;
  verifiedFile?: string;
  writeFile?(path: string, onBytes?: (n: number) => void): Promise<{ digest: string; size: number }>;
}

/** Throws IntegrityError unless `got` matches what the descriptor promised. */
export function checkBlob(what: string, blob: { digest: string; size: number }, got: { digest: string; bytes: number }): void {
  if (got.bytes !== blob.size) throw new IntegrityError(what, `${blob.digest} (${blob.size} bytes)`, `${got.digest} (${got.bytes} bytes)`);
  if (got.digest !== blob.digest) throw new IntegrityError(what, blob.digest, got.digest);
}

/**
 * Writes a blob to `target` (temp file + rename). Skips the write when a file of the right size is
 * already there: blob files are named by digest and only ever renamed into place complete.
 */
export async function writeBlobFile(blob: BlobSource, target: string, onBytes?: (n: number) => void): Promise<'written' | 'present'> {
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isFile() && existing.size === blob.size) return 'present';
  await withTempFile(target, async (tmp) => {
    if (blob.verifiedFile) {
      // Hashed by this process when it was made, read-only, named by its digest: share it (a hard
      // link, as pnpm's and nix's stores do) or let the kernel copy it (reflink where possible).
      const linked = await link(blob.verifiedFile, tmp).then(() => true, () => false);
      if (!linked) await copyFile(blob.verifiedFile, tmp, constants.COPYFILE_FICLONE);
      const st = await stat(tmp);
      if (st.size !== blob.size) throw new IntegrityError(blob.verifiedFile, `${blob.size} bytes`, `${st.size} bytes`);
      onBytes?.(st.size);
      return;
    }
    if (blob.writeFile) {
      // Made on the fly and written in the same pass; what was written is checked against the descriptor.
      const wrote = await blob.writeFile(tmp, onBytes);
      checkBlob(`blob ${blob.digest}`, blob, { digest: wrote.digest, bytes: wrote.size });
      return;
    }
    const counter = new HashCounter(onBytes);
    await pipeline(await blob.open(), counter, createWriteStream(tmp));
    checkBlob(`blob ${blob.digest}`, blob, { digest: counter.digest(), bytes: counter.bytes });
  }, blob.size);
  return 'written';
}

/** Largest manifest/config/index we parse: far above real ones (a few KB), small enough to hold in memory. */
export const MAX_JSON_BLOB = 8 * 1024 * 1024;

export type TarEntryHeader = Parameters<tar.Pack['entry']>[0];

/**
 * One streamed tar entry with backpressure: `write` waits for the pack to drain, `end` resolves once
 * tar-stream has taken the whole entry. A consumer that stops reading destroys the pack and with it
 * the entry: that settles the promises instead of crashing the process.
 */
export async function openTarEntry(pack: tar.Pack, header: TarEntryHeader): Promise<{ write(chunk: Buffer): Promise<void>; end(): Promise<void> }> {
  let finished!: Promise<void>;
  const sink = await new Promise<NodeJS.WritableStream>((resolveSink) => {
    finished = new Promise<void>((resolve, reject) => {
      const entry = pack.entry(header, (err) => (err ? reject(err) : resolve()));
      entry.on('error', reject);
      resolveSink(entry as unknown as NodeJS.WritableStream);
    });
  });
  finished.catch(() => {});
  return {
    async write(chunk) {
      if (!sink.write(chunk)) await Promise.race([once(sink as unknown as EventEmitter, 'drain'), finished]);
    },
    async end() {
      sink.end();
      await finished;
    },
  };
}
