// Hashing helpers: every cache key and pinned file in bake is a sha256.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { canonicalJson } from './json.js';

export type Sha256Hex = string;

export function sha256Bytes(data: Uint8Array | string): Sha256Hex {
  return createHash('sha256').update(data).digest('hex');
}

/** Streams a file (a path, or an open handle read from its start and left open) through sha256 without reading it whole. */
export async function sha256File(file: string | FileHandle): Promise<{ sha256: Sha256Hex; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const stream = typeof file === 'string' ? createReadStream(file, { highWaterMark: 1 << 20 }) : file.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 });
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Digest of a JSON value in canonical form (sorted keys), so equal values give equal digests. */
export function digestOf(value: unknown): Sha256Hex {
  return sha256Bytes(canonicalJson(value));
}

/** Git's blob id: sha1("blob <size>\0" + content); what the Hub gives as `oid` for non-LFS files. */
export function gitBlobSha1(data: Uint8Array): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

export function isSha256Hex(s: unknown): s is Sha256Hex {
  return typeof s === 'string' && /^[0-9a-f]{64}$/.test(s);
}
