// The report and provenance travel with the image: `bake push` of a multi-variant recipe to a real
// registry (Debian's docker-registry 2.8, which has no Referrers API, so the sha256-<hex> tag schema
// is used), then `bake inspect <ref>` reads them back. Two builds from fresh stores push the same
// artifacts (same digests, no duplicate referrers), and a build whose only difference is its timings
// (cache hits instead of runs) gives the same image digest.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { reportValidator } from '../../src/report/schema.js';
import type { BakeReport } from '../../src/report/model.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { reportProject, VARIANTS, type ReportProject } from '../support/report-fixtures.js';

let registry: TestRegistry;
let project: ReportProject;

interface PushedImage { target: string; manifestDigest: string; pushed: { referrers: { artifactType: string; digest: string; via: string }[] } }

before(async () => {
  registry = await startRegistry();
  project = await reportProject();
});
after(async () => {
  await project?.remove();
  await registry?.close();
});

const pushed = async (store: string): Promise<PushedImage[]> => {
  const r = await project.run(['--json', 'push', 'multi', '--to', `${registry.host}/ml/multi`], store);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).images as PushedImage[];
};

async function registryJson(path: string, accept: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${registry.url}/v2/ml/multi/${path}`, { headers: { accept } });
  return { status: res.status, body: res.status === 200 ? await res.json() : undefined };
}

test('push attaches report and provenance to each image; a second build from a fresh store pushes the same digests', { timeout: 900_000 }, async () => {
  const first = await pushed('store-a');
  assert.deepEqual(first.map((i) => i.target), ['chat', 'embed']);
  for (const img of first) {
    assert.deepEqual(img.pushed.referrers.map((a) => [a.artifactType, a.via]), [['application/vnd.dev.bake.report.v1+json', 'tag-schema'], ['application/vnd.in-toto+json', 'tag-schema']]);
    // The referrers tag (distribution 2.8 has no Referrers API) lists exactly these artifacts.
    const tag = await registryJson(`manifests/${img.manifestDigest.replace(':', '-')}`, 'application/vnd.oci.image.index.v1+json');
    assert.equal(tag.status, 200);
    assert.deepEqual(tag.body.manifests.map((m: { digest: string }) => m.digest), img.pushed.referrers.map((a) => a.digest));
    // Each artifact names the image as its subject, with the empty config of an OCI 1.1 artifact.
    for (const a of img.pushed.referrers) {
      const m = await registryJson(`manifests/${a.digest}`, 'application/vnd.oci.image.manifest.v1+json');
      assert.equal(m.body.subject.digest, img.manifestDigest);
      assert.equal(m.body.config.mediaType, 'application/vnd.oci.empty.v1+json');
      assert.equal(m.body.artifactType, a.artifactType);
    }
  }
  const second = await pushed('store-b');
  assert.deepEqual(second.map((i) => [i.manifestDigest, i.pushed.referrers.map((a) => a.digest)]), first.map((i) => [i.manifestDigest, i.pushed.referrers.map((a) => a.digest)]));
  for (const img of second) {
    const tag = await registryJson(`manifests/${img.manifestDigest.replace(':', '-')}`, 'application/vnd.oci.image.index.v1+json');
    assert.equal(tag.body.manifests.length, 2, 'pushing the same artifacts again adds no duplicate referrer');
  }
});

test('bake inspect <ref> lists the report and provenance artifacts and prints the gate summary', { timeout: 120_000 }, async () => {
  const ref = `${registry.host}/ml/multi:1.0.0-chat`;
  const r = await project.run(['inspect', ref]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /gate summary:\n  image: passed \(6\/6 gates, 3\/3 models verified\)/);
  for (const id of VARIANTS.stories) assert.match(r.stdout, new RegExp(`  ${id}: passed: kld_mean=[0-9.e-]+ <= 0\\.5`));
  assert.match(r.stdout, /artifacts referring to it \(referrers tag sha256-[0-9a-f]{64}\): 2/);
  assert.match(r.stdout, /application\/vnd\.dev\.bake\.report\.v1\+json sha256:[0-9a-f]{64}\n    report\.json .*\n    report\.html text\/html/);
  assert.match(r.stdout, /application\/vnd\.in-toto\+json sha256:[0-9a-f]{64}\n    provenance\.intoto\.json/);

  // --json: the same, and the files can be read back by digest.
  const j = await project.run(['--json', 'inspect', ref]);
  const info = JSON.parse(j.stdout) as { digest: string; referrers: { artifacts: { artifactType: string; files: { title: string; digest: string }[] }[] } };
  const file = async (type: string, title: string) => {
    const f = info.referrers.artifacts.find((a) => a.artifactType === type)!.files.find((x) => x.title === title)!;
    return (await fetch(`${registry.url}/v2/ml/multi/blobs/${f.digest}`)).text();
  };
  const report = JSON.parse(await file('application/vnd.dev.bake.report.v1+json', 'report.json')) as BakeReport;
  const validate = await reportValidator();
  assert.ok(validate(report), JSON.stringify(validate.errors));
  assert.equal(report.timings, undefined, 'timings are never pushed');
  assert.deepEqual(report.models.map((m) => m.id), [...VARIANTS.stories]);
  assert.equal(report.targets[0]!.manifest_digest, info.digest);
  assert.match(await file('application/vnd.dev.bake.report.v1+json', 'report.html'), /<svg[^>]*class="marks"/);

  const statement = JSON.parse(await file('application/vnd.in-toto+json', 'provenance.intoto.json'));
  assert.equal(statement._type, 'https://in-toto.io/Statement/v1');
  assert.equal(statement.predicateType, 'https://slsa.dev/provenance/v1');
  assert.deepEqual(statement.subject, [{ name: `${registry.host}/ml/multi`, digest: { sha256: info.digest.slice(7) } }]);
  const lock = JSON.parse(await readFile(join(project.dir, 'models.lock'), 'utf8'));
  const weights = lock.models['multi/stories-q4'].files.find((f: { path: string }) => f.path === 'model.safetensors');
  const deps = statement.predicate.buildDefinition.resolvedDependencies as { name: string; digest: Record<string, string> }[];
  assert.deepEqual(deps.find((d) => d.name === 'stories-q4/model.safetensors')?.digest, { sha256: weights.sha256 });
  const evalDigest = report.models[0]!.inputs.find((i) => i.role === 'eval')!.sha256;
  assert.deepEqual(deps.find((d) => d.name === 'stories-q4 eval text')?.digest, { sha256: evalDigest });
  assert.deepEqual(statement.predicate.buildDefinition.externalParameters.models.map((m: { quantization: { type: string } }) => m.quantization.type), ['Q4_0', 'Q5_1', 'Q8_0']);
  assert.equal(statement.predicate.runDetails.builder.version.bake, report.bake.version);
  assert.ok(statement.predicate.runDetails.builder.version['llama.cpp']);
  assert.equal(statement.predicate.runDetails.byproducts[0].annotations.passed, true);
});

test('bake build writes the report beside its output; a build whose only change is its timings has the same image digest', { timeout: 900_000 }, async () => {
  const chat = (await pushed('store-a')).find((i) => i.target === 'chat')!;
  // store-a has every step cached; store-c runs every step: the timings differ, nothing else does.
  const builds = [];
  for (const store of ['store-a', 'store-c']) {
    const r = await project.run(['--json', 'build', 'multi', '--target', 'chat', '--output', `oci:out/${store}`], store);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(await readFile(join(project.dir, 'out', `${store}.report.json`), 'utf8')) as BakeReport;
    assert.match(await readFile(join(project.dir, 'out', `${store}.report.html`), 'utf8'), /^<!DOCTYPE html>/);
    builds.push({ digest: JSON.parse(r.stdout).images[0].manifestDigest as string, report });
  }
  const [cached, fresh] = builds as [typeof builds[0], typeof builds[0]];
  assert.ok(cached.report.timings!.steps.every((s) => s.cached));
  // (models of one source share their fetch and convert, so those run once per store)
  for (const id of VARIANTS.stories) assert.ok(fresh.report.timings!.steps.some((s) => s.model === id && s.step === 'quantize' && !s.cached && s.ms !== undefined), `${id} quantized in the fresh store`);
  assert.notDeepEqual(cached.report.timings, fresh.report.timings);
  assert.equal(cached.digest, fresh.digest);
  assert.equal(cached.digest, chat.manifestDigest);
  const { timings: _a, ...a } = cached.report;
  const { timings: _b, ...b } = fresh.report;
  assert.deepEqual(a, b);
});
