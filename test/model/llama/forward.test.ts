// The LLaMA-family forward pass (ONNX graphs in onnxruntime) against llama.cpp on the same weights: the
// real stories260K and generated LLaMA (GQA) and Qwen2 (Q/K/V biases, BPE) checkpoints whose sizes are
// multiples of 128. Both run in float32; logits must agree to float rounding and the tokenizers must agree.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { convertHfToGguf } from '../../../src/quant/gguf/index.js';
import { openLlamaCheckpoint } from '../../../src/model/llama/config.js';
import { loadTextTokenizer } from '../../../src/model/llama/tokenizer.js';
import { LlamaRunner, forwardLogits } from '../../../src/model/llama/runner.js';
import { checkpointWeights } from '../../../src/model/llama/weights.js';
import { InputError } from '../../../src/util/errors.js';
import { writeRandomQwen2 } from '../../support/awq-fixtures.js';
import { STORIES_EVAL, STORIES_HF, writeRandomLlama } from '../../support/gguf-fixtures.js';
import { llamaCppLogits } from '../../support/llama-logits.js';

let dir: string;
let evalText: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-llama-forward-'));
  evalText = await readFile(STORIES_EVAL, 'utf8');
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

async function compare(hf: string, name: string, nTokens: number): Promise<{ maxDiff: number; maxAbs: number; tokens: number }> {
  const gguf = join(dir, `${name}.gguf`);
  await convertHfToGguf(hf, gguf, { type: 'F32' });
  const ref = await llamaCppLogits(gguf, evalText, nTokens);
  const tok = await loadTextTokenizer(hf);
  assert.deepEqual([...tok.prefix, ...tok.encode(evalText)].slice(0, nTokens), ref.tokens, `${name}: bake's tokenizer (${tok.kind}) gives llama.cpp's tokens`);
  const ck = await openLlamaCheckpoint(hf);
  const runner = new LlamaRunner(ck.config, { threads: 1 });
  try {
    const logits = await forwardLogits(runner, checkpointWeights(ck), [ref.tokens]);
    const V = ck.config.vocabSize;
    let maxDiff = 0, maxAbs = 0, sameTop = 0;
    ref.logits.forEach((row, i) => {
      let a = 0, b = 0;
      row.forEach((v, j) => {
        maxDiff = Math.max(maxDiff, Math.abs(v - logits[i * V + j]!));
        maxAbs = Math.max(maxAbs, Math.abs(v));
        if (v > row[a]!) a = j;
        if (logits[i * V + j]! > logits[i * V + b]!) b = j;
      });
      if (a === b) sameTop++;
    });
    console.log(`# ${name}: ${ref.tokens.length} positions, max |logit| ${maxAbs.toFixed(3)}, max |bake - llama.cpp| ${maxDiff.toExponential(2)}, same top-1 ${sameTop}/${ref.tokens.length}`);
    assert.equal(sameTop, ref.tokens.length, `${name}: same top token everywhere`);
    return { maxDiff, maxAbs, tokens: ref.tokens.length };
  } finally {
    await runner.close();
  }
}

describe('logits match llama.cpp', () => {
  test('stories260K (real weights, GQA 8/4, head_dim 8, tied embeddings)', async () => {
    const r = await compare(STORIES_HF, 'stories260K', 96);
    assert.ok(r.maxDiff <= 1e-4 * Math.max(1, r.maxAbs), `max diff ${r.maxDiff}`);
  });

  test('generated LLaMA 256/512, 4 heads over 2 kv heads, untied lm_head', async () => {
    const hf = join(dir, 'llama');
    await writeRandomLlama(hf, { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: false }, 7);
    const r = await compare(hf, 'llama', 64);
    assert.ok(r.maxDiff <= 1e-4 * Math.max(1, r.maxAbs), `max diff ${r.maxDiff}`);
  });

  test('generated Qwen2 256/384 with Q/K/V biases and a byte-level BPE tokenizer.json', async () => {
    const hf = join(dir, 'qwen2');
    await writeRandomQwen2(hf, { embd: 256, ff: 384, layers: 2, heads: 4, kvHeads: 2, vocab: 384, tied: true }, 8);
    const r = await compare(hf, 'qwen2', 64);
    assert.ok(r.maxDiff <= 1e-4 * Math.max(1, r.maxAbs), `max diff ${r.maxDiff}`);
  });
});

test('the SentencePiece encoder gives llama.cpp\'s tokens on text with byte fallback, spaces and newlines', async () => {
  const { withModel, evalTokens } = await import('../../../src/verify/llama/runner.js');
  const gguf = join(dir, 'stories-tok.gguf');
  await convertHfToGguf(STORIES_HF, gguf, { type: 'F32' });
  const tok = await loadTextTokenizer(STORIES_HF);
  const texts = ['Café – naïve façade, 日本語 and emoji 🦙!', '  two  spaces\nand\ttabs\n\n', 'x', "It's 3.14159 o'clock; \"quotes\" (and) [brackets] {braces} <0x41>"];
  await withModel(gguf, async (model) => {
    for (const t of texts) assert.deepEqual([...tok.prefix, ...tok.encode(t)], evalTokens(model, t), JSON.stringify(t));
  });
});

describe('bad input', () => {
  test('a non-LLaMA architecture is refused naming the ones the forward pass runs', async () => {
    const hf = join(dir, 'gpt2');
    await writeRandomLlama(hf, { embd: 128, ff: 128, layers: 1, heads: 2, kvHeads: 2, vocab: 512, tied: true }, 3);
    const cfg = JSON.parse(await readFile(join(hf, 'config.json'), 'utf8'));
    await writeFile(join(hf, 'config.json'), JSON.stringify({ ...cfg, architectures: ['GPT2LMHeadModel'] }));
    await assert.rejects(openLlamaCheckpoint(hf), (e: unknown) => e instanceof InputError && e.field === 'architectures[0]' && /GPT2LMHeadModel/.test(e.message) && /Qwen2ForCausalLM/.test(e.expected ?? ''));
  });

  test('a missing tensor is refused before anything runs, naming it', async () => {
    const hf = join(dir, 'missing');
    await writeRandomLlama(hf, { embd: 128, ff: 128, layers: 1, heads: 2, kvHeads: 2, vocab: 512, tied: true }, 3);
    const cfg = JSON.parse(await readFile(join(hf, 'config.json'), 'utf8'));
    await writeFile(join(hf, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 2 }));
    await assert.rejects(openLlamaCheckpoint(hf), (e: unknown) => e instanceof InputError && /missing: model\.layers\.1\.input_layernorm\.weight/.test(e.message));
  });

  test('unsupported RoPE scaling and activation are refused', async () => {
    const hf = join(dir, 'rope');
    await writeRandomLlama(hf, { embd: 128, ff: 128, layers: 1, heads: 2, kvHeads: 2, vocab: 512, tied: true }, 3);
    const cfg = JSON.parse(await readFile(join(hf, 'config.json'), 'utf8'));
    await writeFile(join(hf, 'config.json'), JSON.stringify({ ...cfg, rope_scaling: { rope_type: 'llama3', factor: 8 } }));
    await assert.rejects(openLlamaCheckpoint(hf), (e: unknown) => e instanceof InputError && e.field === 'rope_scaling');
    await writeFile(join(hf, 'config.json'), JSON.stringify({ ...cfg, hidden_act: 'gelu' }));
    await assert.rejects(openLlamaCheckpoint(hf), (e: unknown) => e instanceof InputError && e.field === 'hidden_act');
  });
});
