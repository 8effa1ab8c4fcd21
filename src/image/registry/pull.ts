// Reading images from a registry: the manifest and config now (small, verified), layers lazily
// (fetched when a writer opens them and checked against their digests as they are copied).
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { InputError, IntegrityError } from '../../util/errors.js';
import { MAX_JSON_BLOB } from '../oci/blobs.js';
import { ociLayerType } from '../oci/image.js';
import { parseConfig, parseIndex, parseManifest, pickPlatform, type Platform } from '../oci/parse.js';
import { MediaType, type ImageValue, type Layer } from '../oci/types.js';
import { RegistryClient, type RegistryOptions } from './client.js';
import { formatRef, parseRef } from './ref.js';

export const MANIFEST_ACCEPT = [MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, MediaType.dockerManifestList].join(', ');

export async function pullImage(ref: string, opts: RegistryOptions & { platform?: Platform } = {}): Promise<ImageValue> {
  const r = parseRef(ref);
  const client = new RegistryClient(r.host, opts);
  const repo = r.repository;
  let reference = r.digest ?? r.tag ?? 'latest';
  let doc = await getManifest(client, repo, reference);
  if (r.digest && doc.digest !== r.digest) throw new IntegrityError(ref, r.digest, doc.digest);
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  for (let depth = 0; doc.mediaType === MediaType.ociIndex || doc.mediaType === MediaType.dockerManifestList; depth++) {
    if (depth > 4) throw new InputError(`${ref}: image indexes nest too deep`, { field: 'image' });
    const chosen = pickPlatform(parseIndex(doc.value, `${ref} (index)`), platform, ref);
    reference = chosen.digest;
    doc = await getManifest(client, repo, reference);
    if (doc.digest !== chosen.digest) throw new IntegrityError(`${ref} (${platform.os}/${platform.architecture})`, chosen.digest, doc.digest);
  }
  const where = `${formatRef(r)} manifest`;
  const manifest = parseManifest(doc.value, where);
  const configBytes = await getBlobBytes(client, repo, manifest.config.digest, manifest.config.size);
  const config = parseConfig(JSON.parse(configBytes.toString('utf8')), `${formatRef(r)} config`);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new InputError(`${where}: ${manifest.layers.length} layers but the config lists ${config.rootfs.diff_ids.length} diff_ids`, { field: 'rootfs.diff_ids' });
  }
  const layers: Layer[] = manifest.layers.map((l, i) => ({
    mediaType: ociLayerType(l.mediaType),
    digest: l.digest,
    size: l.size,
    diffId: config.rootfs.diff_ids[i]!,
    ...(l.annotations ? { annotations: l.annotations } : {}),
    origin: { host: r.host, repository: repo },
    open: async () => {
      const res = await client.request('GET', `/v2/${repo}/blobs/${l.digest}`, { ok: [200], what: `fetching layer ${l.digest}` });
      if (!res.body) throw new IntegrityError(`layer ${l.digest}`, `${l.size} bytes`, 'an empty response');
      return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    },
  }));
  return {
    config,
    layers,
    annotations: manifest.annotations ?? {},
    source: { name: `${r.host}/${repo}${r.tag ? `:${r.tag}` : ''}`, digest: doc.digest },
    raw: { config: configBytes, manifest: doc.bytes, manifestMediaType: manifest.mediaType },
  };
}

export async function getManifest(client: RegistryClient, repo: string, reference: string): Promise<{ value: unknown; digest: string; mediaType: string; bytes: Buffer }> {
  const res = await client.request('GET', `/v2/${repo}/manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT }, ok: [200], what: `fetching the manifest ${repo}:${reference}` });
  const bytes = await readBody(res, MAX_JSON_BLOB, `manifest ${repo}:${reference}`);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InputError(`manifest ${repo}:${reference} from ${client.host} is not JSON`, { cause: err });
  }
  const declared = (value as { mediaType?: unknown } | null)?.mediaType;
  const header = res.headers.get('content-type')?.split(';')[0]?.trim();
  const mediaType = typeof declared === 'string' ? declared : header ?? MediaType.ociManifest;
  return { value, digest, mediaType, bytes };
}

export async function getBlobBytes(client: RegistryClient, repo: string, digest: string, size: number): Promise<Buffer> {
  if (size > MAX_JSON_BLOB) throw new InputError(`config blob ${digest} claims ${size} bytes; refusing to hold more than ${MAX_JSON_BLOB}`);
  const res = await client.request('GET', `/v2/${repo}/blobs/${digest}`, { ok: [200], what: `fetching blob ${digest}` });
  const bytes = await readBody(res, size, `blob ${digest}`);
  const got = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (bytes.length !== size || got !== digest) throw new IntegrityError(`blob ${digest}`, digest, got);
  return bytes;
}

export async function readBody(res: Response, max: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  if (!res.body) return Buffer.alloc(0);
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > max) {
      await res.body.cancel().catch(() => {});
      throw new InputError(`${what} is larger than ${max} bytes`);
    }
    parts.push(Buffer.from(chunk));
  }
  return Buffer.concat(parts);
}

/** Every tag of a repository, sorted; follows the registry's Link pagination. */
export async function listTags(ref: string, opts: RegistryOptions = {}): Promise<string[]> {
  const r = parseRef(ref);
  const client = new RegistryClient(r.host, opts);
  const tags: string[] = [];
  let next: string | undefined = `/v2/${r.repository}/tags/list?n=1000`;
  for (let page = 0; next && page < 1000; page++) {
    const res = await client.request('GET', next, { ok: [200, 404], what: `listing tags of ${r.repository}` });
    if (res.status === 404) {
      await res.body?.cancel();
      return [];
    }
    const body = JSON.parse((await readBody(res, MAX_JSON_BLOB, `tag list of ${r.repository}`)).toString('utf8')) as { tags?: unknown };
    if (Array.isArray(body.tags)) for (const t of body.tags) if (typeof t === 'string') tags.push(t);
    const link = /<([^>]+)>;\s*rel="?next"?/.exec(res.headers.get('link') ?? '');
    next = link?.[1];
  }
  return [...new Set(tags)].sort();
}
