// The README's main job: the demo recipe, locked, quantized, verified and baked with no Hub and no
// Docker engine, reproducibly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bake, projectRoot } from '../support/cli.js';
import { tarFiles } from '../support/image-files.js';

const run = promisify(execFile);


test('demo: lock is current, two builds in fresh stores give one digest, layers carry the models and manifests', { timeout: 600_000 }, async () => {
  await run(process.execPath, ['--import', 'tsx', join(projectRoot, 'scripts', 'demo-models.ts')], { cwd: projectRoot });
  const check = await bake(['lock', 'demo', '--check']);
  assert.equal(check.code, 0, check.stderr);

  const tmp = await mkdtemp(join(tmpdir(), 'bake-demo-'));
  const env = { SOURCE_DATE_EPOCH: '1700000000' };
  const a = await bake(['--json', 'build', 'demo', '--output', `oci:${join(tmp, 'a')}`], { env: { ...env, BAKE_STORE: join(tmp, 'store-a') } });
  assert.equal(a.code, 0, a.stderr);
  const b = await bake(['--json', 'build', 'demo', '--output', `oci:${join(tmp, 'b')}`], { env: { ...env, BAKE_STORE: join(tmp, 'store-b') } });
  assert.equal(b.code, 0, b.stderr);
  const ra = JSON.parse(a.stdout);
  const rb = JSON.parse(b.stdout);
  assert.match(ra.images[0].manifestDigest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(ra.images[0].manifestDigest, rb.images[0].manifestDigest);
  assert.equal(await readFile(join(tmp, 'a', 'index.json'), 'utf8'), await readFile(join(tmp, 'b', 'index.json'), 'utf8'));

  // The manifest lists one layer per model; each holds /app/models/<id>/ with its manifest.json.
  const manifest = JSON.parse(await readFile(join(tmp, 'a', 'blobs', 'sha256', ra.images[0].manifestDigest.slice(7)), 'utf8'));
  assert.equal(manifest.layers.length, 3);
  assert.equal(manifest.annotations['org.opencontainers.image.created'], '2023-11-14T22:13:20Z');
  const ids = [];
  for (const layer of manifest.layers) {
    const files = await tarFiles(join(tmp, 'a', 'blobs', 'sha256', layer.digest.slice(7)));
    const mf = [...files.keys()].find((n) => /^app\/models\/[^/]+\/manifest\.json$/.test(n))!;
    const m = JSON.parse(files.get(mf)!.toString('utf8'));
    ids.push(m.id);
    assert.equal(m.verification.passed, true);
    assert.ok(m.source.files.length >= 1);
    for (const f of m.files) assert.ok(files.has(`app/models/${m.id}/${f.path}`), `${f.path} in the layer`);
  }
  assert.deepEqual(ids.sort(), ['ocr-det', 'text-encoder', 'tiny-llama']);
  const te = await tarFiles(join(tmp, 'a', 'blobs', 'sha256', manifest.layers[1].digest.slice(7)));
  assert.ok(te.has('app/models/text-encoder/onnx/model_quantized.onnx'), 'transformers.js q8 name');
  assert.ok(!te.has('app/models/text-encoder/onnx/model.onnx'), 'the fp32 original does not ship');
  const llama = await tarFiles(join(tmp, 'a', 'blobs', 'sha256', manifest.layers[2].digest.slice(7)));
  const gguf = llama.get('app/models/tiny-llama/tiny-llama-Q4_K_M.gguf');
  assert.ok(gguf && gguf.subarray(0, 4).toString('latin1') === 'GGUF', 'a GGUF file ships');
  const lm = JSON.parse(llama.get('app/models/tiny-llama/manifest.json')!.toString('utf8'));
  assert.equal(lm.quantization.format, 'gguf');
  assert.ok(lm.verification.metrics.kld_mean < 0.05);

  // A second build in the same store runs nothing: every step is a cache hit.
  const again = await bake(['build', 'demo', '--output', `oci:${join(tmp, 'c')}`], { env: { ...env, BAKE_STORE: join(tmp, 'store-a') } });
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /\.\.\.$/m, 'no step ran');
  const plan = await bake(['--json', 'plan', 'demo'], { env: { BAKE_STORE: join(tmp, 'store-a') } });
  const steps = JSON.parse(plan.stdout).steps as { step: string; action: string }[];
  assert.ok(steps.filter((s) => s.step === 'fetch' || s.step === 'quantize').every((s) => s.action === 'cached'));
});
