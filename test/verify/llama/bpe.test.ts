// verifyGguf on a BPE model whose vocabulary adds no BOS (random Qwen2 through bake's converter): chunks
// keep their first token, as llama-perplexity does, and the figures still agree with it.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { convertHfToGguf } from '../../../src/quant/gguf/index.js';
import { verifyGguf } from '../../../src/verify/llama/index.js';
import { writeBpeTokenizer, writeRandomLlama } from '../../support/gguf-fixtures.js';
import { EVAL_TEXT, llamaPerplexityKld, llamaQuantize, llamaTools } from '../../support/kquant-gguf.js';

const CTX = 128;
let dir: string;
let bin: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-llama-bpe-'));
  bin = await llamaTools();
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('random Qwen2 (BPE, no BOS) Q4_K_M: KLD, PPL and same-top agree with llama-perplexity', async () => {
  const hf = join(dir, 'hf');
  await writeRandomLlama(hf, { embd: 256, ff: 256, layers: 2, heads: 4, kvHeads: 2, vocab: 300, tied: true, arch: 'qwen2' }, 4);
  await writeBpeTokenizer(hf, 'qwen2', 300);
  const f32 = join(dir, 'qwen2-F32.gguf');
  await convertHfToGguf(hf, f32, { type: 'F32' });
  const quant = join(dir, 'qwen2-Q4_K_M.gguf');
  await llamaQuantize(bin, f32, quant, 'Q4_K_M', false);
  const report = await verifyGguf('qwen2', f32, quant, { max_kld: 0.1 }, { evalText: await readFile(EVAL_TEXT, 'utf8'), ctx: CTX });
  const ref = await llamaPerplexityKld(bin, f32, quant, EVAL_TEXT, CTX, dir);
  const m = report.metrics;
  const nTokens = report.details!.eval_tokens as number;
  assert.equal(m.scored_tokens, Math.floor(nTokens / CTX) * (CTX / 2 - 1));
  assert.ok(Math.abs(m.kld_mean! - ref.kldMean) <= 0.05 * ref.kldMean + 2e-5, `KLD ${m.kld_mean} vs llama-perplexity ${ref.kldMean}`);
  assert.ok(Math.abs(m.ppl! / ref.pplQ - 1) < 0.005, `PPL ${m.ppl} vs ${ref.pplQ}`);
  assert.ok(Math.abs(m.ppl_base! / ref.pplBase - 1) < 0.005, `PPL(base) ${m.ppl_base} vs ${ref.pplBase}`);
  assert.ok(Math.abs(m.same_top_pct! - ref.sameTopPct) <= 2, `same top ${m.same_top_pct} vs ${ref.sameTopPct}`);
  assert.equal(report.passed, true, JSON.stringify(report.gates));
});
