// The recipe side of issue 9 items 6-8, through the CLI as a user runs it: verify.data and
// quantize.calibration.data in a recipe, their content in the step keys, the warnings printed (fresh and
// cached), and the errors for a missing folder or a cosine gate on a one-score model.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bake } from '../support/cli.js';
import { REAL_MODELS } from '../support/onnx-models.js';

function npy(shape: number[], data: Float32Array): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
  header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
  const h = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0]);
  h.writeUInt16LE(header.length, 8);
  return Buffer.concat([h, Buffer.from(header, 'latin1'), Buffer.from(data.buffer)]);
}

const window = (k: number) => npy([25, 96], Float32Array.from({ length: 25 * 96 }, (_, i) => Math.sin(i * 0.37 + k) * (1 + k)));

const recipe = (model: string) => `image: { name: bake.local/ww }
models:
  - id: ww
    path: ../models/ww
${model}
targets: { cpu: { base: scratch } }
`;

/** A project with the wake-word head, a few recipes over it, and folders of .npy feature windows. */
async function project(): Promise<{ dir: string; run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> }> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-recipe-data-'));
  await mkdir(join(dir, 'models', 'ww'), { recursive: true });
  await copyFile(REAL_MODELS.wakeword, join(dir, 'models', 'ww', 'model.onnx'));
  for (const sub of ['eval', 'calib']) {
    await mkdir(join(dir, 'recipes', 'data', sub), { recursive: true });
    for (let k = 0; k < 3; k++) await writeFile(join(dir, 'recipes', 'data', sub, `w${k}.npy`), window(sub === 'eval' ? k : k + 0.5));
  }
  await writeFile(join(dir, 'recipes', 'dynamic.yaml'), recipe('    quantize: { format: onnx-int8 }\n    verify: { runs: 1, max_size_ratio: 0.5 }'));
  await writeFile(join(dir, 'recipes', 'real.yaml'), recipe(`    quantize:
      format: onnx-int8
      mode: static
      calibration: { data: { path: data/calib, kind: npy } }
    verify:
      runs: 1
      data: { path: data/eval, kind: npy, input: "onnx::Flatten_0" }
      max_abs_error: 0.2
      min_decision_agreement: 0.5`));
  await writeFile(join(dir, 'recipes', 'cosine.yaml'), recipe('    quantize: { format: onnx-int8, mode: static }\n    verify: { runs: 1, min_cosine: 0.99 }'));
  await writeFile(join(dir, 'recipes', 'missing.yaml'), recipe('    quantize: { format: onnx-int8, mode: static }\n    verify: { runs: 1, data: { path: data/nope, kind: images } }'));
  const env = { BAKE_STORE: join(dir, 'store') };
  const run = (args: string[]) => bake(['-C', dir, ...args], { cwd: dir, env });
  for (const r of ['dynamic', 'real', 'cosine', 'missing']) {
    const locked = await run(['lock', r]);
    assert.equal(locked.code, 0, locked.stderr);
  }
  return { dir, run };
}

test('recipes: warnings printed fresh and cached, data content in the step keys, clear errors', { timeout: 240_000 }, async () => {
  const p = await project();

  // Item 8: nothing quantized -> a warning with the reason; the size gate fails (exit 5) with the right fix.
  const dyn = await p.run(['verify', 'dynamic']);
  assert.equal(dyn.code, 5, dyn.stderr);
  assert.match(dyn.stderr, /warning: ww: model\.onnx: nothing was quantized \(3 Gemm nodes: Gemm is not quantized in dynamic mode/);
  assert.match(dyn.stderr, /fix: nothing was quantized in onnx\/model_quantized\.onnx .*quantize\.mode: static/);
  assert.doesNotMatch(dyn.stderr, /wider type/);
  // Item 6: generated inputs only -> said loudly; again when every step is cached.
  assert.match(dyn.stderr, /warning: ww: verification ran on generated inputs only/);
  const again = await p.run(['verify', 'dynamic']);
  assert.match(again.stderr, /quantize cached/);
  assert.match(again.stderr, /warning: ww: model\.onnx: nothing was quantized/);
  assert.match(again.stderr, /warning: ww: verification ran on generated inputs only/);

  // Real calibration and eval samples: no synthetic warning, the report says which data it used.
  const real = await p.run(['--json', 'verify', 'real']);
  assert.equal(real.code, 0, real.stdout);
  assert.doesNotMatch(real.stderr, /generated inputs/);
  const report = JSON.parse(real.stdout).reports[0];
  assert.equal(report.synthetic_inputs, false);
  assert.equal(report.details.data.files, 3);
  assert.ok(report.metrics.decision_agreement >= 0.5 && report.metrics.cosine_min === undefined);
  // A changed eval sample re-runs verify only; a changed calibration sample re-runs quantize too.
  const status = (stderr: string, step: string) => stderr.split('\n').map((l) => { try { return JSON.parse(l); } catch { return undefined; } }).find((e) => e?.type === 'step' && e.step === step && e.status !== 'done')?.status;
  await writeFile(join(p.dir, 'recipes', 'data', 'eval', 'w1.npy'), window(1.7));
  const evalChanged = await p.run(['--json', 'verify', 'real']);
  assert.equal(evalChanged.code, 0, evalChanged.stderr);
  assert.equal(status(evalChanged.stderr, 'quantize'), 'cached');
  assert.equal(status(evalChanged.stderr, 'verify'), 'running');
  await writeFile(join(p.dir, 'recipes', 'data', 'calib', 'w1.npy'), window(2.2));
  const calibChanged = await p.run(['--json', 'verify', 'real']);
  assert.equal(status(calibChanged.stderr, 'quantize'), 'running');

  // Item 7: a cosine gate on one score per sample is refused (exit 2), naming the field.
  const cos = await p.run(['verify', 'cosine']);
  assert.equal(cos.code, 2, cos.stderr);
  assert.match(cos.stderr, /verify\.min_cosine cannot discriminate for ww/);
  // A data folder that is not there: exit 2 naming the field (before verify runs).
  const missing = await p.run(['verify', 'missing']);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /verify\.data\.path: .*data\/nope is not a readable folder/);
});
