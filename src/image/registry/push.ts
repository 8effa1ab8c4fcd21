// Pushing an image value through the distribution API: blobs first (skip what the registry has,
// mount what a sibling repository has, upload the rest in chunks), the manifest last, so a failed
// push never leaves a tag pointing at missing blobs.
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

/** Uploads one small blob unless the repository has it (artifact files: no mounts, no progress). True when uploaded. */
export async function putBlob(client: RegistryClient, repo: string, blob: BlobSource): Promise<boolean> {
  if (await blobExists(client, repo, blob.digest)) return false;
  await uploadBlob(client, repo, blob, undefined, () => {});
  return true;
}

/** PUTs manifest bytes under a tag or digest; checks the digest the registry echoes; returns its headers. */
export async function putManifest(client: RegistryClient, repo: string, reference: string, mediaType: string, bytes: Uint8Array, digest: string): Promise<Headers> {
  const res = await client.request('PUT', `/v2/${repo}/manifests/${reference}`, {
    headers: { 'content-type': mediaType },
    body: () => bytes,
    ok: [200, 201],
    what: `putting the manifest ${repo}:${reference}`,
  });
  await res.body?.cancel();
  const echoed = res.headers.get('docker-content-digest');
  if (echoed && echoed !== digest) throw new IntegrityError(`${client.host}/${repo}:${reference}`, digest, echoed, { hint: 'the registry stored different manifest bytes than were sent' });
  return res.headers;
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

/** Blobs up to this size go in one buffered PUT (retried as a whole); larger ones are streamed. */
const SMALL_BLOB = 4 * 1024 * 1024;

/**
 * Streams the blob in PATCHes of at most `chunkSize` bytes, never holding more than a read buffer in
 * memory. After a failed PATCH the upload's status says how much the registry holds; we re-open the
 * source there and carry on. The registry checks the digest when the upload is closed.
 */
async function uploadOnce(client: RegistryClient, location: string, blob: PushBlob, onSent: (n: number) => void): Promise<void> {
  let loc = location;
  if (blob.size <= SMALL_BLOB) {
    const reader = new ByteReader(await openAt(blob, 0), blob.digest);
    const bytes = Buffer.concat(await collect(reader.take(blob.size)));
    await reader.expectEnd(blob.size);
    const res = await client.request('PUT', withDigest(loc, blob.digest), {
      headers: { 'content-type': 'application/octet-stream' },
      body: () => bytes,
      ok: [201],
      what: `uploading blob ${blob.digest}`,
    }).catch(digestMismatch(blob.digest));
    await res.body?.cancel();
    onSent(blob.size);
    return;
  }
  let offset = 0;
  let reader = new ByteReader(await openAt(blob, 0), blob.digest);
  let failures = 0;
  try {
    while (offset < blob.size) {
      const len = Math.min(client.chunkSize, blob.size - offset);
      try {
        loc = await patchStream(client, loc, reader, offset, len, blob.digest, onSent);
        offset += len;
      } catch (err) {
        if (!isTransient(err) || ++failures > PATCH_RETRIES) throw err;
        await new Promise((r) => setTimeout(r, client.backoff(failures - 1)));
        // Did (part of) the chunk land? The upload status's Range says how much the registry holds.
        const status = await client.request('GET', loc, { ok: [204, 404], what: `checking the upload of ${blob.digest}` });
        await status.body?.cancel();
        if (status.status === 404) throw new UploadLost(`the registry lost the upload session after a failed chunk (${(err as Error).message})`);
        const have = /^(?:bytes=)?0-(\d+)$/.exec(status.headers.get('range') ?? '');
        const held = have ? Number(have[1]) + 1 : 0;
        if (held < offset || held > offset + len) throw new UploadLost(`the registry holds ${held} bytes of the upload, expected ${offset} to ${offset + len}`);
        loc = status.headers.get('location') ?? loc;
        reader.close();
        reader = new ByteReader(await openAt(blob, held), blob.digest);
        offset = held;
      }
    }
    await reader.expectEnd(blob.size);
  } finally {
    reader.close();
  }
  const res = await client.request('PUT', withDigest(loc, blob.digest), { ok: [201], what: `closing the upload of ${blob.digest}` }).catch(digestMismatch(blob.digest));
  await res.body?.cancel();
}

/** The registry hashes what it received: DIGEST_INVALID means the source is not the blob it claims. */
function digestMismatch(digest: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof NetworkError && err.status === 400 && /DIGEST_INVALID/.test(err.message)) {
      throw new IntegrityError(`blob ${digest}`, digest, 'other bytes (the registry computed a different digest)', { hint: 'the layer source changed after the image was built; build again', cause: err });
    }
    throw err;
  };
}

const PATCH_RETRIES = 4;

function isTransient(err: unknown): boolean {
  return err instanceof NetworkError && (err.status === undefined || err.status >= 500 || err.status === 408 || err.status === 429);
}

/** One PATCH of `len` bytes from `reader`, streamed. */
async function patchStream(client: RegistryClient, loc: string, reader: ByteReader, start: number, len: number, digest: string, onSent: (n: number) => void): Promise<string> {
  const end = start + len - 1;
  const parts = reader.take(len);
  let sourceError: unknown;
  let sent = start;
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      try {
        const r = await parts.next();
        if (r.done) return ctrl.close();
        ctrl.enqueue(r.value);
        sent += r.value.length;
        onSent(sent);
      } catch (err) {
        sourceError = err;
        ctrl.error(err);
      }
    },
    async cancel() {
      await parts.return(undefined);
    },
  });
  try {
    const res = await client.request('PATCH', loc, {
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end}`, 'content-length': String(len) },
      body: () => body,
      ok: [202],
      what: `uploading bytes ${start}-${end} of ${digest}`,
      noRetry: true,
    });
    await res.body?.cancel();
    return res.headers.get('location') ?? loc;
  } catch (err) {
    // A source that is not what its descriptor says is not a network problem: report it as itself.
    if (sourceError) throw sourceError;
    throw err;
  }
}

/** The blob's bytes from `offset` on: files seek, other sources are read and skipped. */
async function openAt(blob: PushBlob, offset: number): Promise<NodeJS.ReadableStream> {
  if (blob.verifiedFile) return createReadStream(blob.verifiedFile, { start: offset, highWaterMark: 1 << 20 });
  const stream = await blob.open();
  if (offset === 0) return stream;
  const reader = new ByteReader(stream, blob.digest);
  for await (const _ of reader.take(offset)) {
    /* skipped: already held by the registry */
  }
  return reader.rest();
}

async function collect(parts: AsyncGenerator<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const p of parts) out.push(p);
  return out;
}

/** Reads exact byte counts from a stream without copying; a short or long source is an IntegrityError. */
class ByteReader {
  private readonly it: AsyncIterator<Buffer>;
  private pending: Buffer | undefined;
  private consumed = 0;

  constructor(private readonly stream: NodeJS.ReadableStream, private readonly digest: string) {
    this.it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      let buf = this.pending;
      this.pending = undefined;
      if (!buf) {
        const r = await this.it.next();
        if (r.done) throw new IntegrityError(`blob ${this.digest}`, `at least ${this.consumed + left} bytes`, `${this.consumed} bytes`, { hint: 'the layer source changed after the image was built; build again' });
        buf = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
      }
      if (buf.length > left) {
        this.pending = buf.subarray(left);
        buf = buf.subarray(0, left);
      }
      left -= buf.length;
      this.consumed += buf.length;
      yield buf;
    }
  }

  /** Throws unless the source has no bytes beyond `size`. */
  async expectEnd(size: number): Promise<void> {
    for (;;) {
      if (this.pending?.length) break;
      const r = await this.it.next();
      if (r.done) return;
      this.pending = r.value;
    }
    throw new IntegrityError(`blob ${this.digest}`, `${size} bytes`, `more than ${size} bytes`, { hint: 'the layer source changed after the image was built; build again' });
  }

  /** What is left, as a stream. */
  rest(): NodeJS.ReadableStream {
    const self = this;
    return Readable.from(
      (async function* () {
        if (self.pending) yield self.pending;
        self.pending = undefined;
        for (;;) {
          const r = await self.it.next();
          if (r.done) return;
          yield r.value;
        }
      })(),
    );
  }

  close(): void {
    void this.it.return?.();
    (this.stream as unknown as { destroy?: () => void }).destroy?.();
  }
}
