// Outputs with one value per sample (issue 9, item 7): a wake-word classifier head gives one sigmoid score.
// Cosine of one number with another is 1 whenever the signs agree, so a cosine gate there always passed.
// Such outputs are now compared by absolute error and by the decision at a threshold, and a cosine gate on
// a model whose every output is one value is refused as unable to discriminate.
import assert from 'node:assert/strict';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { quantizeOnnxModel } from '../../../src/quant/onnx/index.js';
import { InputError } from '../../../src/util/errors.js';
import { verifyOnnxModel } from '../../../src/verify/onnx/index.js';
import wavefile from 'wavefile';
import { REAL_MODELS, runFile, tempDir } from '../../support/onnx-models.js';

/** An .npy file (version 1) of float32 values. */
function npy(shape: number[], data: Float32Array): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
  header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
  const h = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0]);
  h.writeUInt16LE(header.length, 8);
  return Buffer.concat([h, Buffer.from(header, 'latin1'), Buffer.from(data.buffer)]);
}

/** The wake-word head quantized statically (its Gemms are quantized), and a folder of input features as .npy. */
async function wakeword(): Promise<{ src: string; out: string; base: string; inputs: Float32Array[] }> {
  const src = await tempDir('bake-ww-');
  await copyFile(REAL_MODELS.wakeword, join(src, 'model.onnx'));
  const out = await tempDir('bake-ww-q-');
  const r = await quantizeOnnxModel(src, out, { format: 'onnx-int8', mode: 'static', calibration: { samples: 4 } });
  assert.equal((r.params['model.onnx'] as { rewritten: Record<string, number> }).rewritten.Gemm, 3);
  // Features of [25, 96] (the batch axis left out, as np.save of one window would be); scaled so the
  // scores spread over (0, 1) instead of all sitting at one end.
  const base = await tempDir('bake-ww-data-');
  await mkdir(join(base, 'features'));
  const inputs: Float32Array[] = [];
  let seed = 3;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 8; i++) {
    const x = Float32Array.from({ length: 25 * 96 }, () => (rand() * 2 - 1) * (0.5 + i));
    inputs.push(x);
    await writeFile(join(base, 'features', `w${i}.npy`), npy([25, 96], x));
  }
  return { src, out, base, inputs };
}

test('a cosine gate on a model whose only output is one score is refused: it cannot discriminate', async () => {
  const { src, out } = await wakeword();
  for (const gate of ['min_cosine', 'min_mean_cosine'] as const) {
    await assert.rejects(verifyOnnxModel('ww', src, out, { [gate]: 0.99, runs: 1 }, { samples: 2, measureMemory: false }),
      (e: unknown) => e instanceof InputError && e.exit === 'usage' && e.field === `verify.${gate}` && /cannot discriminate/.test(e.message) && /min_decision_agreement/.test(e.hint ?? ''));
  }
});

test('one-value outputs: mean and max absolute error and decision agreement at a threshold, on .npy feature windows', async () => {
  const { src, out, base, inputs } = await wakeword();
  // What the two models score on each window, computed here independently of the verifier.
  const scores: [number, number][] = [];
  for (const x of inputs) {
    const feeds = { 'onnx::Flatten_0': new ort.Tensor('float32', x, [1, 25, 96]) };
    const [a, b] = [await runFile(join(src, 'model.onnx'), feeds), await runFile(join(out, 'onnx/model_quantized.onnx'), feeds)];
    scores.push([(Object.values(a)[0]!.data as Float32Array)[0]!, (Object.values(b)[0]!.data as Float32Array)[0]!]);
  }
  const data = { path: 'features', kind: 'npy' as const };
  const report = await verifyOnnxModel('ww', src, out, { data, max_abs_error: 1, max_mean_abs_error: 1, min_decision_agreement: 0.5, runs: 1 }, { dataDir: base, measureMemory: false });
  assert.equal(report.synthetic_inputs, false);
  assert.equal(report.metrics.cosine_mean, undefined, 'no cosine for one value per sample');
  assert.equal(report.metrics.cosine_min, undefined);
  const errs = scores.map(([a, b]) => Math.abs(a - b));
  assert.ok(Math.abs(report.metrics.max_abs_error! - Math.max(...errs)) < 1e-7);
  assert.ok(Math.abs(report.metrics.mean_abs_error! - errs.reduce((s, e) => s + e, 0) / errs.length) < 1e-7);
  const agree = (t: number) => scores.filter(([a, b]) => (a >= t) === (b >= t)).length / scores.length;
  assert.equal(report.metrics.decision_agreement, agree(0.5), 'sigmoid scores: threshold 0.5');
  assert.equal((report.details!.files as Record<string, { outputs: Record<string, { decision_threshold: number }> }>)['onnx/model_quantized.onnx']!.outputs['39']!.decision_threshold, 0.5);
  assert.equal(report.passed, true);
  // A threshold between the two models' scores of one window: that decision flips, and the gate sees it.
  const [a0, b0] = scores.find(([a, b]) => a !== b)!;
  const threshold = (a0 + b0) / 2;
  const strict = await verifyOnnxModel('ww', src, out, { data, decision_threshold: threshold, min_decision_agreement: 1, runs: 1 }, { dataDir: base, measureMemory: false });
  assert.equal(strict.metrics.decision_agreement, agree(threshold));
  assert.ok(strict.metrics.decision_agreement! < 1);
  assert.equal(strict.passed, false);
  assert.equal(strict.gates[0]!.metric, 'decision_agreement');
});

test('silero-vad on WAV clips (verify.data kind audio): the speech score by error and decision, the state by cosine', async () => {
  const src = await tempDir('bake-vad-');
  await copyFile(REAL_MODELS.sileroOp15, join(src, 'model.onnx'));
  const out = await tempDir('bake-vad-q-');
  await quantizeOnnxModel(src, out, { format: 'onnx-int8' });
  const base = await tempDir('bake-vad-data-');
  await mkdir(join(base, 'clips'));
  for (let k = 0; k < 3; k++) {
    // 8 kHz clips: a chirp, resampled to the model's 16 kHz by the recipe.
    const wav = new wavefile.WaveFile();
    wav.fromScratch(1, 8000, '16', Int16Array.from({ length: 400 }, (_, i) => Math.round(8000 * (k + 1) * Math.sin(i * i * 0.0005 * (k + 1)))));
    await writeFile(join(base, 'clips', `c${k}.wav`), wav.toBuffer());
  }
  const data = { path: 'clips', kind: 'audio' as const, input: 'input', preprocess: { sample_rate: 16000, length: 512 } };
  const r = await verifyOnnxModel('vad', src, out, { data, min_cosine: 0.9, min_decision_agreement: 1, runs: 1 }, { dataDir: base, inputs: { dims: { 'state:1': 1 } }, measureMemory: false });
  assert.equal(r.synthetic_inputs, false);
  const outputs = (r.details!.files as Record<string, { outputs: Record<string, Record<string, unknown>> }>)['onnx/model_quantized.onnx']!.outputs;
  assert.equal(outputs.output!.values, 'one per sample');
  assert.equal(outputs.output!.cosine_mean, undefined);
  assert.equal(typeof outputs.stateN!.cosine_min, 'number', 'the state is compared by cosine, and the cosine gate rests on it');
  assert.equal(r.metrics.cosine_min, outputs.stateN!.cosine_min);
  assert.equal((r.details!.data as { files: number }).files, 3);
});
