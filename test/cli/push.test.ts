// `bake push` and `bake build --push` against a real registry (Debian's docker-registry on loopback).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { bake, projectRoot } from '../support/cli.js';

const run = promisify(execFile);
let registry: TestRegistry;
let env: Record<string, string>;

before(async () => {
  registry = await startRegistry();
  await run(process.execPath, ['--import', 'tsx', join(projectRoot, 'scripts', 'demo-models.ts')], { cwd: projectRoot });
  env = { BAKE_STORE: join(await mkdtemp(join(tmpdir(), 'bake-push-')), 'store'), SOURCE_DATE_EPOCH: '1700000000' };
});
after(() => registry?.close());

test('bake push sends the image with release tags; a second push uploads nothing; the digest matches the OCI build', { timeout: 600_000 }, async () => {
  const repo = `${registry.host}/ml/demo`;
  const r = await bake(['--json', 'push', 'demo', '--to', repo], { env });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout).images[0];
  assert.ok(out.pushed.pushedBlobs >= 3, 'config and two model layers uploaded');
  const tags = (await (await fetch(`${registry.url}/v2/ml/demo/tags/list`)).json()) as { tags: string[] };
  // The release tags, plus the referrers tag listing the report and provenance (the registry has no Referrers API).
  assert.deepEqual(tags.tags.sort(), ['0.1.0', '0.1.0-cpu', `models-${out.modelsDigest.slice(0, 12)}-cpu`, out.manifestDigest.replace(':', '-')].sort());
  // What the registry serves under each tag is the manifest bake computed.
  const head = await fetch(`${registry.url}/v2/ml/demo/manifests/0.1.0-cpu`, { method: 'HEAD', headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(head.headers.get('docker-content-digest'), out.manifestDigest);

  const again = await bake(['--json', 'push', 'demo', '--to', repo], { env });
  assert.equal(again.code, 0, again.stderr);
  const second = JSON.parse(again.stdout).images[0];
  assert.equal(second.pushed.pushedBlobs, 0);
  assert.equal(second.manifestDigest, out.manifestDigest);

  const tmp = await mkdtemp(join(tmpdir(), 'bake-push-oci-'));
  const built = await bake(['--json', 'build', 'demo', '--output', `oci:${tmp}`], { env });
  assert.equal(JSON.parse(built.stdout).images[0].manifestDigest, out.manifestDigest);
});

test('a registry that refuses is a clear error (exit 4/6), and no tag appears', async () => {
  const ro = await startRegistry({ readonly: true });
  try {
    const r = await bake(['push', 'demo', '--to', `${ro.host}/ml/demo`], { env });
    assert.ok(r.code === 4 || r.code === 6, `exit ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /error: .*(refus|denied|read-only|405|unsupported|disabled)/i);
    const tags = await fetch(`${ro.url}/v2/ml/demo/tags/list`);
    assert.notEqual(tags.status, 200);
  } finally {
    await ro.close();
  }
});
