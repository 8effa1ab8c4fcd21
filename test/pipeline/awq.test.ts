// recipes/vllm-awq.yaml through the CLI, daemonless (no engine, no Hub): the AWQ model is quantized,
// verified (round trip, KLD vs RTN) and packaged with its manifest; the published AWQ stand-in is checked
// as vLLM would unpack it; the calibration text is part of the key; a broken upload fails the build (exit 2).
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readSafetensorsHeader } from '../../src/formats/safetensors/index.js';
import { bake, projectRoot } from '../support/cli.js';
import { writeVllmAwqModels } from '../support/awq-fixtures.js';

let root: string;
let env: Record<string, string>;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bake-awq-pipeline-'));
  await mkdir(join(root, 'recipes'), { recursive: true });
  await cp(join(projectRoot, 'recipes', 'vllm-awq.yaml'), join(root, 'recipes', 'vllm-awq.yaml'));
  await writeVllmAwqModels(join(root, '.bake', 'vllm-awq-models'));
  env = { SOURCE_DATE_EPOCH: '1700000000', BAKE_STORE: join(root, 'store'), HF_HUB_OFFLINE: '1' };
  const lock = await bake(['-C', root, 'lock', 'vllm-awq'], { cwd: root, env });
  assert.equal(lock.code, 0, lock.stderr);
});
after(async () => { if (root) await rm(root, { recursive: true, force: true }); });

const run = (args: string[]) => bake(['-C', root, ...args], { cwd: root, env });

test('verify then materialize: the AWQ checkpoint ships with its manifest; the AWQ upload is checked', { timeout: 300_000 }, async () => {
  const v = await run(['--json', 'verify', 'vllm-awq']);
  assert.equal(v.code, 0, v.stderr);
  const reports = JSON.parse(v.stdout) as { reports: { model: string; metrics: Record<string, number>; passed: boolean; gates: { gate: string }[] }[] };
  const chat = reports.reports.find((r) => r.model === 'chat')!;
  assert.equal(chat.passed, true);
  assert.ok(chat.metrics.kld_mean! < chat.metrics.rtn_kld_mean!, `AWQ ${chat.metrics.kld_mean} vs RTN ${chat.metrics.rtn_kld_mean}`);
  console.log(`# chat: KLD AWQ ${chat.metrics.kld_mean!.toFixed(5)} vs RTN ${chat.metrics.rtn_kld_mean!.toFixed(5)}`);
  assert.deepEqual(chat.gates.map((g) => g.gate), ['max_kld', 'max_kld_vs_rtn', 'checkpoint_roundtrip']);
  const glm = reports.reports.find((r) => r.model === 'glm-air')!;
  assert.equal(glm.metrics.quantized_linears, 14);

  const out = join(root, 'out');
  const m = await run(['materialize', 'vllm-awq', '--out', out]);
  assert.equal(m.code, 0, m.stderr);
  const manifest = JSON.parse(await readFile(join(out, 'chat', 'manifest.json'), 'utf8'));
  assert.equal(manifest.quantization.format, 'awq');
  assert.equal(manifest.quantization.params.checkpoint, 'compressed-tensors');
  assert.equal(manifest.quantization.params.group_size, 128);
  assert.match(manifest.quantization.params.calibration.sha256, /^[0-9a-f]{64}$/);
  assert.equal(manifest.verification.passed, true);
  const config = JSON.parse(await readFile(join(out, 'chat', 'config.json'), 'utf8'));
  assert.equal(config.quantization_config.quant_method, 'compressed-tensors');
  const h = await readSafetensorsHeader(join(out, 'chat', 'model.safetensors'));
  assert.equal(h.tensors.get('model.layers.0.mlp.down_proj.weight_packed')!.dtype, 'I32');
  assert.ok((await readFile(join(out, 'chat', 'tokenizer.json'), 'utf8')).length > 0);
  assert.equal(JSON.parse(await readFile(join(out, 'glm-air', 'config.json'), 'utf8')).quantization_config.quant_method, 'awq');
});

test('the calibration text is part of the quantize key', { timeout: 120_000 }, async () => {
  // After the run above, plan computes the keys run used: everything cached.
  const plan0 = await run(['--json', 'plan', 'vllm-awq']);
  assert.equal(plan0.code, 0, plan0.stderr);
  const all = (JSON.parse(plan0.stdout) as { steps: { model: string; step: string; action: string }[] }).steps;
  assert.deepEqual(all.map((x) => `${x.model}:${x.step}:${x.action}`), ['chat:fetch:cached', 'chat:quantize:cached', 'chat:verify:cached', 'chat:package:cached', 'glm-air:fetch:cached', 'glm-air:verify:cached', 'glm-air:package:cached']);
  const recipe = join(root, 'recipes', 'vllm-awq.yaml');
  const text = await readFile(recipe, 'utf8');
  await writeFile(join(root, 'recipes', 'calib.txt'), 'A different calibration text, one document.\nAnd a second one, about ships and harbours.\n');
  await writeFile(recipe, text.replace('calibration: { samples: 16, length: 128 }', 'calibration: { texts: calib.txt, samples: 2, length: 16 }'));
  try {
    const plan = await run(['--json', 'plan', 'vllm-awq']);
    assert.equal(plan.code, 0, plan.stderr);
    const steps = (JSON.parse(plan.stdout) as { steps: { model: string; step: string; action: string }[] }).steps.filter((x) => x.model === 'chat');
    assert.equal(steps.find((s) => s.step === 'fetch')!.action, 'cached');
    assert.notEqual(steps.find((s) => s.step === 'quantize')!.action, 'cached');
  } finally {
    await writeFile(recipe, text);
  }
});

test('a broken AWQ upload fails the build naming the tensor (exit 2)', { timeout: 120_000 }, async () => {
  const dir = join(root, '.bake', 'vllm-awq-models', 'glm-air-awq');
  const cfgFile = join(dir, 'config.json');
  const cfg = JSON.parse(await readFile(cfgFile, 'utf8'));
  cfg.quantization_config.group_size = 64;
  await writeFile(cfgFile, JSON.stringify(cfg, null, 2) + '\n');
  const relock = await run(['lock', 'vllm-awq', '--update', 'glm-air']);
  assert.equal(relock.code, 0, relock.stderr);
  const v = await run(['verify', 'vllm-awq']);
  assert.equal(v.code, 2, v.stderr);
  assert.match(v.stderr, /glm-air/);
  assert.match(v.stderr, /qzeros is \[\d+, \d+\] where autoawq-gemm with group 64 needs \[\d+, \d+\]/);
});
