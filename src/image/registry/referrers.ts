// Artifacts that refer to an image (OCI distribution-spec 1.1, "Pushing Manifests with Subject" and
// "Listing Referrers"): pushing an artifact manifest whose `subject` is the image, and finding those
// artifacts again. A registry with the Referrers API answers the push with `OCI-Subject` and lists them
// at GET /v2/<name>/referrers/<digest>. One without it (Debian's docker-registry 2.8) gets the referrers
// tag schema, as ORAS does: an image index tagged `sha256-<hex>` listing the referrers, which the client
// pulls, extends and pushes again (then deletes the index it replaced, best effort).
import { Readable } from 'node:stream';
import { EngineError, InputError } from '../../util/errors.js';
import { canonicalJson } from '../../util/json.js';
import { sha256Bytes } from '../../util/digest.js';
import { MAX_JSON_BLOB } from '../oci/blobs.js';
import type { ArtifactManifest } from '../oci/artifact.js';
import { parseIndex, parseManifest } from '../oci/parse.js';
import { MediaType, type Descriptor, type OciIndex } from '../oci/types.js';
import { RegistryClient, type RegistryOptions } from './client.js';
import { getBlobBytes, getManifest, MANIFEST_ACCEPT, readBody } from './pull.js';
import { putBlob, putManifest } from './push.js';
import { formatRef, parseRef } from './ref.js';

export type ReferrersVia = 'referrers-api' | 'tag-schema';

export interface ReferrerPush {
  artifactType: string;
  digest: string;
  size: number;
  /** How the registry records the link: its Referrers API, or the `sha256-<hex>` tag bake maintains. */
  via: ReferrersVia;
}

/**
 * The referrers tag of a digest: the algorithm truncated to 32 characters, `-`, the encoded part
 * truncated to 64, characters a tag may not hold replaced by `-`.
 */
export function referrersTag(digest: string): string {
  const colon = digest.indexOf(':');
  if (colon <= 0) throw new InputError(`"${digest}" is not a digest`, { expected: 'algorithm:encoded, e.g. sha256:<64 hex>' });
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, '-');
  return `${clean(digest.slice(0, colon).slice(0, 32))}-${clean(digest.slice(colon + 1).slice(0, 64))}`;
}

/** The descriptor a referrers list holds for an artifact: its artifactType and its manifest annotations. */
function referrerDescriptor(a: ArtifactManifest): Descriptor {
  return { mediaType: MediaType.ociManifest, digest: a.descriptor.digest, size: a.descriptor.size, artifactType: a.artifactType, ...(Object.keys(a.annotations).length ? { annotations: a.annotations } : {}) };
}

/** Pushes an artifact (its blobs, then its manifest by digest) and records it as a referrer of its subject. */
export async function pushReferrer(repository: string, artifact: ArtifactManifest, opts: RegistryOptions = {}): Promise<ReferrerPush> {
  const r = parseRef(repository);
  const client = new RegistryClient(r.host, opts);
  const repo = r.repository;
  for (const b of artifact.blobs) await putBlob(client, repo, { digest: b.digest, size: b.size, open: () => Readable.from([Buffer.from(b.bytes)]) });
  const headers = await putManifest(client, repo, artifact.descriptor.digest, MediaType.ociManifest, artifact.bytes, artifact.descriptor.digest);
  const base = { artifactType: artifact.artifactType, digest: artifact.descriptor.digest, size: artifact.descriptor.size };
  // A registry that processed `subject` says so; otherwise the client keeps the referrers tag.
  if (headers.get('oci-subject') === artifact.subject.digest) return { ...base, via: 'referrers-api' };
  await addToReferrersTag(client, repo, artifact.subject.digest, referrerDescriptor(artifact));
  return { ...base, via: 'tag-schema' };
}

/** The index under the referrers tag, or undefined when there is none (404). */
async function readReferrersTag(client: RegistryClient, repo: string, subject: string): Promise<{ index: OciIndex; digest: string } | undefined> {
  const tag = referrersTag(subject);
  // Accept every manifest type: a registry answers 404 for a type the client does not accept, and a tag
  // holding something else must be seen (and refused), not taken for absent and overwritten.
  const res = await client.request('GET', `/v2/${repo}/manifests/${tag}`, { headers: { accept: MANIFEST_ACCEPT }, ok: [200, 404], what: `reading the referrers tag ${repo}:${tag}` });
  if (res.status === 404) {
    await res.body?.cancel();
    return undefined;
  }
  const bytes = await readBody(res, MAX_JSON_BLOB, `referrers index ${repo}:${tag}`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new EngineError(`${client.host}/${repo}:${tag} is not JSON; bake keeps the referrers of ${subject} there`, { cause: err, hint: `delete the tag ${tag} or push to a registry with the Referrers API` });
  }
  const mediaType = (value as { mediaType?: unknown } | null)?.mediaType;
  if (mediaType !== MediaType.ociIndex) {
    // Spec: a referrers tag holding something else is a failure, not something to overwrite.
    throw new EngineError(`${client.host}/${repo}:${tag} holds a ${String(mediaType)}, not the image index that lists the referrers of ${subject}`, { hint: `the tag ${tag} is reserved for referrers (OCI distribution-spec 1.1): delete it and push again` });
  }
  return { index: parseIndex(value, `${client.host}/${repo}:${tag}`), digest: `sha256:${sha256Bytes(bytes)}` };
}

async function addToReferrersTag(client: RegistryClient, repo: string, subject: string, desc: Descriptor): Promise<void> {
  const tag = referrersTag(subject);
  const old = await readReferrersTag(client, repo, subject);
  const manifests = old?.index.manifests ?? [];
  if (manifests.some((m) => m.digest === desc.digest)) return; // already listed: no duplicate, nothing to push
  const index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [...manifests, desc] };
  const bytes = Buffer.from(canonicalJson(index));
  await putManifest(client, repo, tag, MediaType.ociIndex, bytes, `sha256:${sha256Bytes(bytes)}`);
  if (old) {
    // The replaced index is now untagged garbage; registries without delete answer 405, which is fine.
    await client.request('DELETE', `/v2/${repo}/manifests/${old.digest}`, { ok: [202, 404, 405], what: 'deleting the replaced referrers index', noRetry: true }).then((res) => res.body?.cancel(), () => {});
  }
}

export interface Referrers {
  via: ReferrersVia;
  manifests: Descriptor[];
}

/**
 * The artifacts referring to `digest`: the Referrers API (following Link pages; filtered client-side
 * when the registry did not apply `artifactType`), else the referrers tag; none when neither has any.
 */
export async function listReferrers(repository: string, digest: string, opts: RegistryOptions & { artifactType?: string } = {}): Promise<Referrers> {
  const r = parseRef(repository);
  const client = new RegistryClient(r.host, opts);
  const repo = r.repository;
  const filter = (list: Descriptor[]) => (opts.artifactType ? list.filter((d) => d.artifactType === opts.artifactType) : list);
  let next: string | undefined = `/v2/${repo}/referrers/${digest}${opts.artifactType ? `?artifactType=${encodeURIComponent(opts.artifactType)}` : ''}`;
  const found: Descriptor[] = [];
  for (let page = 0; next && page < 100; page++) {
    const res: Response = await client.request('GET', next, { headers: { accept: MediaType.ociIndex }, ok: [200, 404], what: `listing the referrers of ${digest}` });
    if (res.status === 404) {
      await res.body?.cancel();
      if (page > 0) break;
      const tagged = await readReferrersTag(client, repo, digest);
      return { via: 'tag-schema', manifests: filter(tagged?.index.manifests ?? []) };
    }
    const bytes = await readBody(res, MAX_JSON_BLOB, `referrers of ${digest}`);
    found.push(...parseIndex(JSON.parse(bytes.toString('utf8')), `${client.host}/${repo} referrers of ${digest}`).manifests);
    next = /<([^>]+)>;\s*rel="?next"?/.exec(res.headers.get('link') ?? '')?.[1];
  }
  return { via: 'referrers-api', manifests: filter(found) };
}

export interface ImageInspection {
  reference: string;
  digest: string;
  mediaType: string;
  annotations: Record<string, string>;
  referrers: { via: ReferrersVia; artifacts: (Descriptor & { files: { title?: string; mediaType: string; digest: string; size: number }[] })[] };
}

/** An image's manifest annotations and the artifacts referring to it, with the files each holds. */
export async function inspectRemoteImage(ref: string, opts: RegistryOptions = {}): Promise<ImageInspection> {
  const r = parseRef(ref);
  const client = new RegistryClient(r.host, opts);
  const doc = await getManifest(client, r.repository, r.digest ?? r.tag ?? 'latest');
  const value = doc.value as { annotations?: Record<string, string> };
  const annotations = doc.mediaType === MediaType.ociIndex ? parseIndex(value, formatRef(r)).annotations ?? {} : parseManifest(value, formatRef(r)).annotations ?? {};
  const repository = `${r.host}/${r.repository}`;
  const listed = await listReferrers(repository, doc.digest, opts);
  const artifacts = [];
  for (const d of listed.manifests) {
    const m = await getManifest(client, r.repository, d.digest);
    const files = m.mediaType === MediaType.ociManifest ? parseManifest(m.value, `${repository}@${d.digest}`).layers.map((l) => ({ ...(l.annotations?.['org.opencontainers.image.title'] ? { title: l.annotations['org.opencontainers.image.title'] } : {}), mediaType: l.mediaType, digest: l.digest, size: l.size })) : [];
    artifacts.push({ ...d, files });
  }
  return { reference: formatRef(r), digest: doc.digest, mediaType: doc.mediaType, annotations, referrers: { via: listed.via, artifacts } };
}

/** One file of an artifact, checked against its digest. */
export async function readArtifactFile(repository: string, file: { digest: string; size: number }, opts: RegistryOptions = {}): Promise<Buffer> {
  const r = parseRef(repository);
  return getBlobBytes(new RegistryClient(r.host, opts), r.repository, file.digest, file.size);
}

