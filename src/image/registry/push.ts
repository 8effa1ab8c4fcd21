// Pushing an image value through the distribution API: blobs first (skip what the registry has,
// mount what a sibling repository has, upload the rest in chunks), the manifest last, so a failed
// push never leaves a tag pointing at missing blobs.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { InputError, IntegrityError, NetworkError } from '../../util/errors.js';
import type { BlobSource } from '../oci/blobs.js';
import { serializeImage } from '../oci/image.js';
import { isValidTag } from '../oci/tags.js';
import type { ImageValue, LayerOrigin } from '../oci/types.js';
import { RegistryClient, type RegistryOptions } from './client.js';
import { parseRef } from './ref.js';

export type PushEventType = 'blob-exists' | 'blob-mounted' | 'blob-upload-start' | 'blob-progress' | 'blob-uploaded' | 'manifest-put';

export interface PushEvent {
  type: PushEventType;
  digest?: string;
  /** For blob-progress: bytes of this blob sent so far. For the others: the blob's size. */
  bytes?: number;
  tag?: string;
}

export interface PushOptions extends RegistryOptions {
  tags: string[];
  onEvent?: (e: PushEvent) => void;
}

export interface PushResult {
  manifestDigest: string;
  pushedBlobs: number;
  skippedBlobs: number;
  mountedBlobs: number;
}

interface PushBlob extends BlobSource {
  origin?: LayerOrigin;
}

export async function pushImage(img: ImageValue, ref: string, opts: PushOptions): Promise<PushResult> {
  const r = parseRef(ref);
  if (r.digest) throw new InputError(`push target "${ref}" names a digest`, { field: 'image', expected: 'host/repository[:tag]' });
  const tags = [...new Set([...(r.tag ? [r.tag] : []), ...opts.tags])];
  if (tags.length === 0) throw new InputError(`no tag to push ${ref} as`, { field: 'tags', hint: 'add :TAG to the image or pass tags' });
  for (const t of tags) if (!isValidTag(t)) throw new InputError(`"${t}" is not a valid image tag`, { field: 'tags', expected: 'letters, digits, _ . - (at most 128, not starting with . or -)' });
  const ser = serializeImage(img);
  const client = new RegistryClient(r.host, opts);
  const emit = opts.onEvent ?? (() => {});
  const repo = r.repository;

  const blobs = new Map<string, PushBlob>();
  for (const l of img.layers) if (!blobs.has(l.digest)) blobs.set(l.digest, l);
  const cfg = ser.config;
  blobs.set(cfg.descriptor.digest, { digest: cfg.descriptor.digest, size: cfg.bytes.length, open: () => Readable.from([Buffer.from(cfg.bytes)]) });

  const result: PushResult = { manifestDigest: ser.manifest.descriptor.digest, pushedBlobs: 0, skippedBlobs: 0, mountedBlobs: 0 };
  for (const blob of blobs.values()) {
    if (await blobExists(client, repo, blob.digest)) {
      result.skippedBlobs++;
      emit({ type: 'blob-exists', digest: blob.digest, bytes: blob.size });
      continue;
    }
    let location: string | undefined;
    if (blob.origin && blob.origin.host === r.host && blob.origin.repository !== repo) {
      const mounted = await client.request('POST', `/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(blob.origin.repository)}`, {
        ok: [201, 202],
        what: `mounting ${blob.digest} from ${blob.origin.repository}`,
      });
      await mounted.body?.cancel();
      if (mounted.status === 201) {
        result.mountedBlobs++;
        emit({ type: 'blob-mounted', digest: blob.digest, bytes: blob.size });
        continue;
      }
      // 202: the registry would not mount but opened an upload session instead.
      location = mounted.headers.get('location') ?? undefined;
    }
    emit({ type: 'blob-upload-start', digest: blob.digest, bytes: blob.size });
    await uploadBlob(client, repo, blob, location, (sent) => emit({ type: 'blob-progress', digest: blob.digest, bytes: sent }));
    result.pushedBlobs++;
    emit({ type: 'blob-uploaded', digest: blob.digest, bytes: blob.size });
  }

  for (const tag of tags) {
    const res = await client.request('PUT', `/v2/${repo}/manifests/${tag}`, {
      headers: { 'content-type': ser.manifest.descriptor.mediaType },
      body: () => ser.manifest.bytes,
      ok: [200, 201],
      what: `putting the manifest ${repo}:${tag}`,
    });
    await res.body?.cancel();
    const echoed = res.headers.get('docker-content-digest');
    if (echoed && echoed !== result.manifestDigest) throw new IntegrityError(`${r.host}/${repo}:${tag}`, result.manifestDigest, echoed, { hint: 'the registry stored different manifest bytes than were sent' });
    emit({ type: 'manifest-put', digest: result.manifestDigest, tag, bytes: ser.manifest.bytes.length });
  }
  return result;
}

async function blobExists(client: RegistryClient, repo: string, digest: string): Promise<boolean> {
  const res = await client.request('HEAD', `/v2/${repo}/blobs/${digest}`, { ok: [200, 404], what: `checking blob ${digest}` });
  await res.body?.cancel();
  return res.status === 200;
}

function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

async function startUpload(client: RegistryClient, repo: string): Promise<string> {
  const res = await client.request('POST', `/v2/${repo}/blobs/uploads/`, { ok: [202], what: `starting an upload to ${repo}` });
  await res.body?.cancel();
  const loc = res.headers.get('location');
  if (!loc) throw new NetworkError(`starting an upload to ${repo}: ${client.host} gave no Location`, { url: client.url(`/v2/${repo}/blobs/uploads/`) });
  return loc;
}

/** The registry lost track of an upload session (e.g. a reply was lost and its state token is stale). */
class UploadLost extends Error {}

const UPLOAD_RESTARTS = 3;

/** Uploads one blob, starting over (new session, source re-opened) when the registry lost the session. */
async function uploadBlob(client: RegistryClient, repo: string, blob: PushBlob, location: string | undefined, onSent: (n: number) => void): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const loc = attempt === 0 && location ? location : await startUpload(client, repo);
    try {
      await uploadOnce(client, loc, blob, onSent);
      return;
    } catch (err) {
      // Best effort: drop the upload session so the registry does not keep a partial blob around.
      await client.request('DELETE', loc, { ok: [204, 404], what: 'cancelling an upload', noRetry: true }).then((r) => r.body?.cancel(), () => {});
      if (err instanceof UploadLost && attempt < UPLOAD_RESTARTS) continue;
      if (err instanceof UploadLost) throw new NetworkError(`uploading ${blob.digest} to ${client.host}: ${err.message}, ${UPLOAD_RESTARTS + 1} times`, { hint: 'the registry keeps dropping uploads; check its logs and storage' });
      throw err;
    }
  }
}

/**
 * Small blobs go in one PUT; larger ones in PATCH chunks of `chunkSize`, each held in memory so it
 * can be resent. After a failed PATCH the upload's status says how much arrived, and we resume there.
 */
async function uploadOnce(client: RegistryClient, location: string, blob: PushBlob, onSent: (n: number) => void): Promise<void> {
  let loc = location;
  const hash = createHash('sha256');
  let sent = 0;
  const source = blob.verifiedFile ? createReadStream(blob.verifiedFile, { highWaterMark: 1 << 20 }) : await blob.open();
  if (blob.size <= client.chunkSize) {
    const bytes = await readExactly(source, blob.size, blob.digest);
    hash.update(bytes);
    checkHash(blob, hash);
    const res = await client.request('PUT', withDigest(loc, blob.digest), {
      headers: { 'content-type': 'application/octet-stream' },
      body: () => bytes,
      ok: [201],
      what: `uploading blob ${blob.digest}`,
    });
    await res.body?.cancel();
    onSent(blob.size);
    return;
  }
  for await (const chunk of chunksOf(source, client.chunkSize)) {
    if (sent + chunk.length > blob.size) throw new IntegrityError(`blob ${blob.digest}`, `${blob.size} bytes`, `more than ${blob.size} bytes`);
    hash.update(chunk);
    loc = await patchChunk(client, loc, chunk, sent, blob.digest);
    sent += chunk.length;
    onSent(sent);
  }
  if (sent !== blob.size) throw new IntegrityError(`blob ${blob.digest}`, `${blob.size} bytes`, `${sent} bytes`);
  checkHash(blob, hash);
  const res = await client.request('PUT', withDigest(loc, blob.digest), { ok: [201], what: `closing the upload of ${blob.digest}` });
  await res.body?.cancel();
}

async function patchChunk(client: RegistryClient, loc: string, chunk: Buffer, start: number, digest: string): Promise<string> {
  const end = start + chunk.length - 1;
  const retries = 4;
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await client.request('PATCH', loc, {
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end}`, 'content-length': String(chunk.length) },
        body: () => chunk,
        ok: [202],
        what: `uploading bytes ${start}-${end} of ${digest}`,
        noRetry: true,
      });
      await res.body?.cancel();
      return res.headers.get('location') ?? loc;
    } catch (err) {
      const transient = err instanceof NetworkError && (err.status === undefined || err.status >= 500 || err.status === 408 || err.status === 429);
      if (!transient || attempt >= retries) throw err;
      await new Promise((r) => setTimeout(r, client.backoff(attempt)));
      // Did the chunk land before the failure? The upload status's Range says how much the registry holds.
      const status = await client.request('GET', loc, { ok: [204, 404], what: `checking the upload of ${digest}` });
      await status.body?.cancel();
      if (status.status === 404) throw new UploadLost(`the registry lost the upload session after a failed chunk (${(err as Error).message})`);
      const have = /^(?:bytes=)?0-(\d+)$/.exec(status.headers.get('range') ?? '');
      const held = have ? Number(have[1]) + 1 : 0;
      loc = status.headers.get('location') ?? loc;
      if (held === end + 1) return loc;
      if (held !== start) throw new UploadLost(`the registry holds ${held} bytes of the upload, expected ${start} or ${end + 1}`);
    }
  }
}

function checkHash(blob: BlobSource, hash: ReturnType<typeof createHash>): void {
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== blob.digest) throw new IntegrityError(`blob ${blob.digest}`, blob.digest, got, { hint: 'the layer source changed after the image was built; build again' });
}

async function readExactly(stream: NodeJS.ReadableStream, size: number, digest: string): Promise<Buffer> {
  const out = Buffer.allocUnsafe(size);
  let n = 0;
  for await (const c of stream as AsyncIterable<Buffer>) {
    if (n + c.length > size) throw new IntegrityError(`blob ${digest}`, `${size} bytes`, `more than ${size} bytes`);
    c.copy(out, n);
    n += c.length;
  }
  if (n !== size) throw new IntegrityError(`blob ${digest}`, `${size} bytes`, `${n} bytes`);
  return out;
}

/** Re-cuts a stream into buffers of exactly `size` bytes (the last may be shorter). */
async function* chunksOf(stream: NodeJS.ReadableStream, size: number): AsyncGenerator<Buffer> {
  let buf = Buffer.allocUnsafe(size);
  let n = 0;
  for await (const c of stream as AsyncIterable<Buffer>) {
    let off = 0;
    while (off < c.length) {
      const take = Math.min(size - n, c.length - off);
      c.copy(buf, n, off, off + take);
      n += take;
      off += take;
      if (n === size) {
        yield buf;
        buf = Buffer.allocUnsafe(size); // the yielded chunk may still be in flight: never reuse it
        n = 0;
      }
    }
  }
  if (n > 0) yield buf.subarray(0, n);
}
