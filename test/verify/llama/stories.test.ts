// verifyGguf on a real model (stories260K) in real llama.cpp: its figures must agree with llama.cpp's own
// llama-perplexity --kl-divergence on the same files, and the gates must decide from them.
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { enforceGates } from '../../../src/verify/gates.js';
import { verifyGguf } from '../../../src/verify/llama/index.js';
import { GateError, InputError } from '../../../src/util/errors.js';
import { EVAL_TEXT, llamaPerplexityKld, llamaQuantize, llamaTools, writeStories260KF32 } from '../../support/kquant-gguf.js';

const CTX = 128; // eval.txt is 2,120 tokens: 16 chunks, 1,008 scored tokens
let dir: string;
let bin: string;
let f32: string;
let evalText: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-llama-verify-'));
  bin = await llamaTools();
  f32 = await writeStories260KF32(join(dir, 'stories260K-f32.gguf'));
  evalText = await readFile(EVAL_TEXT, 'utf8');
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

// Q4_K_M on stories260K falls back to Q5_0/Q8_0/F16 (rows of 64 and 172), Q8_0 is close to lossless.
for (const type of ['Q8_0', 'Q4_K_M']) {
  describe(`stories260K ${type}`, () => {
    let quant: string;
    before(async () => {
      quant = join(dir, `stories260K-${type}.gguf`);
      await llamaQuantize(bin, f32, quant, type, false);
    });

    test('PPL, mean KLD and same-top agree with llama-perplexity; gates pass', async () => {
      const report = await verifyGguf('stories260K', f32, quant, { max_kld: 0.05, min_same_top: 85, max_size_ratio: 0.35 }, { evalText, ctx: CTX });
      const ref = await llamaPerplexityKld(bin, f32, quant, EVAL_TEXT, CTX, dir);
      const m = report.metrics;
      assert.equal(m.scored_tokens, 16 * (CTX / 2 - 1));
      // Same scheme, different builds of ggml (node-llama-cpp's prebuilt CPU binary vs a GGML_NATIVE=OFF
      // build): logits differ in the last bits, so the statistics agree closely but not exactly.
      assert.ok(Math.abs(m.kld_mean! - ref.kldMean) <= 0.05 * ref.kldMean + 2e-5, `KLD ${m.kld_mean} vs llama-perplexity ${ref.kldMean}`);
      assert.ok(Math.abs(m.ppl! / ref.pplQ - 1) < 0.005, `PPL ${m.ppl} vs ${ref.pplQ}`);
      assert.ok(Math.abs(m.ppl_base! / ref.pplBase - 1) < 0.001, `PPL(base) ${m.ppl_base} vs ${ref.pplBase}`);
      assert.ok(Math.abs(m.same_top_pct! - ref.sameTopPct) <= 1, `same top ${m.same_top_pct} vs ${ref.sameTopPct}`);
      assert.ok(m.kld_mean! > 0, 'a quantized model differs from its source');
      assert.equal(m.ppl_ratio, m.ppl! / m.ppl_base!);
      assert.ok(m.size_ratio! > 0.2 && m.size_ratio! < 0.35, `size ratio ${m.size_ratio}`);
      assert.equal(report.passed, true, JSON.stringify(report.gates));
      assert.deepEqual(report.gates.map((g) => g.gate), ['max_size_ratio', 'max_kld', 'min_same_top', 'generation_smoke']);
      const gen = report.details!.generation as { source: { text: string }; quantized: { text: string; tokens: number[] } };
      assert.match(gen.source.text, /^Once upon a time, there was a little girl named Lily/);
      assert.equal(gen.quantized.tokens.length, 32);
    });
  });
}

test('the source against itself: zero divergence, all tops equal, and a too-strict gate fails', async () => {
  const report = await verifyGguf('stories260K', f32, f32, { max_kld: 0, max_ppl_ratio: 1.0001 }, { evalText, ctx: CTX });
  assert.ok(Math.abs(report.metrics.kld_mean!) < 1e-6, `KLD ${report.metrics.kld_mean}`);
  assert.equal(report.metrics.same_top_pct, 100);
  assert.ok(Math.abs(report.metrics.ppl_ratio! - 1) < 1e-9);
  // KLD against the 16-bit compressed base is ~1e-7, not 0: max_kld 0 must fail and name the metric.
  const kldGate = report.gates.find((g) => g.gate === 'max_kld')!;
  assert.equal(kldGate.passed, report.metrics.kld_mean! <= 0);
  if (!kldGate.passed) {
    assert.equal(report.passed, false);
    assert.throws(() => enforceGates('stories260K', report), (e: unknown) => e instanceof GateError && e.metric === 'kld_mean');
  }
});

test('bad input: a missing file and a text too short for the chunk size are InputErrors', async () => {
  await assert.rejects(verifyGguf('x', join(dir, 'nope.gguf'), f32, {}, { evalText }), (e: unknown) => e instanceof InputError && /nope\.gguf/.test(e.message));
  await assert.rejects(verifyGguf('x', f32, f32, {}, { evalText: 'Once upon a time.', ctx: 64 }), (e: unknown) => e instanceof InputError && e.field === 'verify.eval');
  const notGguf = join(dir, 'not.gguf');
  await import('node:fs/promises').then((fs) => fs.writeFile(notGguf, 'hello'));
  await assert.rejects(verifyGguf('x', notGguf, f32, {}, { evalText }), (e: unknown) => e instanceof InputError && e.file === notGguf);
});

test('without an eval text or ctx: the built-in text, a chunk size that fits it, and the same figures shape', async () => {
  const quant = join(dir, 'stories260K-Q8_0-default.gguf');
  await llamaQuantize(bin, f32, quant, 'Q8_0', false);
  const report = await verifyGguf('stories260K', f32, quant, { max_kld: 0.05 }, { generateTokens: 8 });
  const ctx = report.details!.ctx as number;
  const evalTokens = report.details!.eval_tokens as number;
  assert.ok(evalTokens >= 2 * ctx && ctx >= 16 && ctx <= 512, `ctx ${ctx} for ${evalTokens} tokens`);
  assert.equal(report.metrics.scored_tokens, Math.floor(evalTokens / ctx) * (ctx / 2 - 1));
  assert.ok(report.metrics.kld_mean! > 0 && report.metrics.kld_mean! < 0.05);
  assert.equal(report.metrics.generation_tokens, 8);
  assert.equal(report.passed, true);
});

test('a chunk evaluated in groups (large-vocabulary path) gives the logits of one batch', async () => {
  const { chunkLogits, evalTokens, withModel } = await import('../../../src/verify/llama/runner.js');
  await withModel(f32, async (model) => {
    const tokens = evalTokens(model, evalText).slice(0, 2 * CTX);
    const whole: Float32Array[] = [];
    const grouped: Float32Array[] = [];
    const targets: number[][] = [[], []];
    for await (const c of chunkLogits(model, tokens, CTX)) whole.push(...c.logits), targets[0]!.push(...c.targets);
    for await (const c of chunkLogits(model, tokens, CTX, undefined, 512 * 10)) grouped.push(...c.logits), targets[1]!.push(...c.targets);
    assert.equal(whole.length, 2 * (CTX / 2 - 1));
    assert.deepEqual(targets[1], targets[0]);
    let maxDiff = 0;
    whole.forEach((row, i) => row.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - grouped[i]![j]!)))));
    assert.ok(maxDiff < 1e-3, `max logit difference ${maxDiff}`);
  });
});
