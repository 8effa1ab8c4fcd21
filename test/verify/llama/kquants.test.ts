// Files written with bake's own K-quant kernels load and generate in llama.cpp (node-llama-cpp), and
// verifyGguf's KL divergence for them agrees with llama-perplexity's on the same files.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { quantizeRowQ4_K, quantizeRowQ5_K, quantizeRowQ6_K } from '../../../src/quant/gguf/kquants.js';
import { verifyGguf } from '../../../src/verify/llama/index.js';
import {
  encodeGguf, EVAL_TEXT, GGML_TYPE, llamaPerplexityKld, llamaTools, randomLlamaKv, randomLlamaWeights, type TensorIn,
} from '../../support/kquant-gguf.js';

const SHAPE = { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2 };
const CTX = 128;
const KINDS = [
  { name: 'Q4_K', type: GGML_TYPE.Q4_K, bytes: 144, fileType: 14, quantize: quantizeRowQ4_K },
  { name: 'Q5_K', type: GGML_TYPE.Q5_K, bytes: 176, fileType: 16, quantize: quantizeRowQ5_K },
  { name: 'Q6_K', type: GGML_TYPE.Q6_K, bytes: 210, fileType: 18, quantize: quantizeRowQ6_K },
];

let dir: string;
let bin: string;
let evalText: string;
const f32Path = (): string => join(dir, 'random-f32.gguf');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-llama-kq-'));
  bin = await llamaTools();
  evalText = await readFile(EVAL_TEXT, 'utf8');
  const kv = await randomLlamaKv(SHAPE);
  const tensors = randomLlamaWeights(SHAPE, 11, false);
  await writeFile(f32Path(), encodeGguf(kv, tensors));
  for (const kind of KINDS) {
    const quantized: TensorIn[] = tensors.map((t) => {
      if (t.dims.length < 2) return t;
      const values = new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));
      const out = new Uint8Array((values.length / 256) * kind.bytes);
      kind.quantize(values, out);
      return { ...t, type: kind.type, data: out };
    });
    const qkv = { ...kv, 'general.file_type': { type: 'u32' as const, value: kind.fileType }, 'general.quantization_version': { type: 'u32' as const, value: 2 } };
    await writeFile(join(dir, `random-${kind.name}.gguf`), encodeGguf(qkv, quantized));
  }
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('Q4_K, Q5_K and Q6_K files from bake kernels: llama.cpp loads and generates; KLD matches llama-perplexity and orders by bits', async () => {
  const kld: Record<string, number> = {};
  for (const kind of KINDS) {
    const quant = join(dir, `random-${kind.name}.gguf`);
    const report = await verifyGguf('random-llama', f32Path(), quant, { max_kld: 1 }, { evalText, ctx: CTX });
    const ref = await llamaPerplexityKld(bin, f32Path(), quant, EVAL_TEXT, CTX, dir);
    const m = report.metrics;
    assert.equal(report.passed, true, `${kind.name}: ${JSON.stringify(report.gates)}`);
    assert.equal(m.generation_tokens, 32, `${kind.name} generated ${m.generation_tokens} tokens`);
    assert.ok(Math.abs(m.kld_mean! - ref.kldMean) <= 0.05 * ref.kldMean + 2e-5, `${kind.name}: KLD ${m.kld_mean} vs llama-perplexity ${ref.kldMean}`);
    assert.ok(Math.abs(m.ppl! / ref.pplQ - 1) < 0.005, `${kind.name}: PPL ${m.ppl} vs ${ref.pplQ}`);
    // Random weights give many near-ties for the top token, so allow 2 points here (stories260K: 1).
    assert.ok(Math.abs(m.same_top_pct! - ref.sameTopPct) <= 2, `${kind.name}: same top ${m.same_top_pct} vs ${ref.sameTopPct}`);
    // Bits per weight over 32: 4.5, 5.5, 6.5625 (norms stay F32, so slightly above).
    const bpw = { Q4_K: 4.5, Q5_K: 5.5, Q6_K: 6.5625 }[kind.name]!;
    assert.ok(m.size_ratio! > bpw / 32 && m.size_ratio! < bpw / 32 + 0.01, `${kind.name}: size ratio ${m.size_ratio}`);
    kld[kind.name] = m.kld_mean!;
    if (process.env.BAKE_TEST_VERBOSE) console.log(kind.name, JSON.stringify(m), JSON.stringify(ref));
  }
  assert.ok(kld.Q6_K! < kld.Q5_K! && kld.Q5_K! < kld.Q4_K!, `KLD should fall with more bits: ${JSON.stringify(kld)}`);
});
