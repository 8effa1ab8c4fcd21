// Referrers (OCI distribution-spec 1.1): against Debian's docker-registry 2.8, which lacks the Referrers
// API, bake keeps the sha256-<hex> tag as ORAS does (no duplicates, earlier referrers kept, a tag holding
// something else refused); against a registry with the API (a small in-memory one here, answering
// OCI-Subject), the tag is never written and the list comes from GET /v2/<name>/referrers/<digest>.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { artifactManifest } from '../../../src/image/oci/artifact.js';
import { listReferrers, pushReferrer, referrersTag } from '../../../src/image/registry/referrers.js';
import { EngineError } from '../../../src/util/errors.js';
import { startRegistry, type TestRegistry } from '../../support/registry.js';

const sha = (b: Uint8Array | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
let registry: TestRegistry;
before(async () => {
  registry = await startRegistry();
});
after(() => registry?.close());

async function putImage(base: string, repo: string): Promise<{ mediaType: string; digest: string; size: number }> {
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const up = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  const loc = new URL(up.headers.get('location')!, base);
  loc.searchParams.set('digest', sha(config));
  assert.equal((await fetch(loc, { method: 'PUT', body: config })).status, 201);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length }, layers: [] }));
  assert.equal((await fetch(`${base}/v2/${repo}/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })).status, 201);
  return { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length };
}

const artifact = (subject: { mediaType: string; digest: string; size: number }, type: string, text: string) =>
  artifactManifest({ artifactType: type, subject, files: [{ mediaType: 'text/plain', title: 'a.txt', bytes: Buffer.from(text) }], annotations: { 'dev.bake.test': text } });

test('the referrers tag of a digest follows the spec (algorithm truncated to 32, encoded to 64, other characters to -)', () => {
  assert.equal(referrersTag(`sha256:${'a'.repeat(64)}`), `sha256-${'a'.repeat(64)}`);
  assert.equal(
    referrersTag('test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation'),
    'test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot',
  );
});

test('without a Referrers API: the tag lists every referrer once, with its artifactType and annotations', async () => {
  const subject = await putImage(registry.url, 'ml/ref');
  const repo = `${registry.host}/ml/ref`;
  const a = artifact(subject, 'application/vnd.test.a', 'one');
  const b = artifact(subject, 'application/vnd.test.b', 'two');
  assert.equal((await pushReferrer(repo, a)).via, 'tag-schema');
  assert.equal((await pushReferrer(repo, a)).via, 'tag-schema');
  await pushReferrer(repo, b);
  const listed = await listReferrers(repo, subject.digest);
  assert.equal(listed.via, 'tag-schema');
  assert.deepEqual(listed.manifests.map((m) => [m.digest, m.artifactType, m.annotations?.['dev.bake.test']]), [[a.descriptor.digest, 'application/vnd.test.a', 'one'], [b.descriptor.digest, 'application/vnd.test.b', 'two']]);
  assert.deepEqual((await listReferrers(repo, subject.digest, { artifactType: 'application/vnd.test.b' })).manifests.map((m) => m.digest), [b.descriptor.digest]);
  // An image nobody refers to has none.
  assert.deepEqual((await listReferrers(repo, `sha256:${'0'.repeat(64)}`)).manifests, []);
});

test('a referrers tag that holds something other than an index is refused, not overwritten', async () => {
  const subject = await putImage(registry.url, 'ml/taken');
  // Someone tagged an image manifest as the referrers tag.
  const manifest = await (await fetch(`${registry.url}/v2/ml/taken/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).arrayBuffer();
  await fetch(`${registry.url}/v2/ml/taken/manifests/${referrersTag(subject.digest)}`, { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  await assert.rejects(pushReferrer(`${registry.host}/ml/taken`, artifact(subject, 'application/vnd.test.a', 'x')), (e: unknown) => e instanceof EngineError && /not the image index/.test(e.message) && /delete it/.test(e.hint ?? ''));
});

/** The parts of a registry the referrers code uses, in memory, with the Referrers API. */
function apiRegistry(): { fetch: typeof fetch; seen: string[] } {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { type: string; bytes: Buffer }>();
  const seen: string[] = [];
  const handler = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const method = init?.method ?? 'GET';
    seen.push(`${method} ${url.pathname}`);
    const body = init?.body ? Buffer.from(init.body as Uint8Array) : Buffer.alloc(0);
    let m: RegExpExecArray | null;
    if ((m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]+)$/.exec(url.pathname))) return new Response(null, { status: blobs.has(m[2]!) ? 200 : 404 });
    if (/\/blobs\/uploads\/$/.test(url.pathname) && method === 'POST') return new Response(null, { status: 202, headers: { location: `${url.origin}/upload/1` } });
    if (url.pathname === '/upload/1' && method === 'PUT') {
      blobs.set(url.searchParams.get('digest')!, body);
      return new Response(null, { status: 201 });
    }
    if ((m = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(url.pathname))) {
      if (method === 'PUT') {
        manifests.set(m[2]!, { type: String((init?.headers as Record<string, string>)['content-type']), bytes: body });
        const subject = (JSON.parse(body.toString()) as { subject?: { digest: string } }).subject;
        return new Response(null, { status: 201, headers: { 'docker-content-digest': sha(body), ...(subject ? { 'oci-subject': subject.digest } : {}) } });
      }
      const found = manifests.get(m[2]!);
      return found ? new Response(found.bytes, { status: 200, headers: { 'content-type': found.type } }) : new Response(null, { status: 404 });
    }
    if ((m = /^\/v2\/(.+)\/referrers\/(sha256:[0-9a-f]+)$/.exec(url.pathname))) {
      const list = [...manifests.values()].map((x) => ({ x, v: JSON.parse(x.bytes.toString()) })).filter(({ v }) => v.subject?.digest === m![2])
        .map(({ x, v }) => ({ mediaType: x.type, digest: sha(x.bytes), size: x.bytes.length, artifactType: v.artifactType, annotations: v.annotations }));
      return new Response(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: list }), { status: 200, headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' } });
    }
    return new Response('404 page not found', { status: 404 });
  };
  return { fetch: handler as typeof fetch, seen };
}

test('with a Referrers API: the registry says OCI-Subject, no tag is written, the list comes from the API', async () => {
  const reg = apiRegistry();
  const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'b'.repeat(64)}`, size: 100 };
  const a = artifact(subject, 'application/vnd.test.a', 'one');
  const pushed = await pushReferrer('127.0.0.1:9/ml/api', a, { fetch: reg.fetch });
  assert.equal(pushed.via, 'referrers-api');
  assert.ok(!reg.seen.some((s) => s.includes(referrersTag(subject.digest))), 'the referrers tag is neither read nor written');
  const listed = await listReferrers('127.0.0.1:9/ml/api', subject.digest, { fetch: reg.fetch });
  assert.deepEqual([listed.via, listed.manifests.map((m) => [m.digest, m.artifactType])], ['referrers-api', [[a.descriptor.digest, 'application/vnd.test.a']]]);
});
