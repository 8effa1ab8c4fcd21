// The encoders' GGUF files quantize byte for byte as llama-quantize quantizes them (the llama.cpp built
// here is the oracle): token_embd treated as the output (no output.weight), token types and positions
// left F32, fused attn_qkv counted as attn_v, K-quant fallbacks on 128-wide rows.
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { convertHfToGguf, requantizeGguf } from '../../src/quant/gguf/index.js';
import { writeEncoderModel } from '../support/embedding-models.js';
import { llamaQuantize, llamaToolsBin } from '../support/gguf-fixtures.js';

let dir: string;
let bin: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-encoder-oracle-'));
  bin = await llamaToolsBin();
  await writeEncoderModel(join(dir, 'bert'), { arch: 'bert', hidden: 256, intermediate: 512, onnx: false });
  await writeEncoderModel(join(dir, 'nomic'), { arch: 'nomic-bert', hidden: 128, intermediate: 384, onnx: false });
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

for (const model of ['bert', 'nomic']) {
  test(`${model}: Q8_0, Q4_K_M, Q5_K_M, Q6_K and Q4_0 equal llama-quantize's files`, { timeout: 600_000 }, async () => {
    const f16 = join(dir, `${model}-F16.gguf`);
    await convertHfToGguf(join(dir, model), f16, { type: 'F16' });
    for (const type of ['Q8_0', 'Q4_K_M', 'Q5_K_M', 'Q6_K', 'Q4_0']) {
      const ours = join(dir, `${model}-${type}.bake.gguf`);
      const theirs = join(dir, `${model}-${type}.ref.gguf`);
      await requantizeGguf(f16, ours, { type });
      await llamaQuantize(bin, f16, theirs, type);
      assert.ok((await readFile(ours)).equals(await readFile(theirs)), `${model} ${type} differs from llama-quantize`);
    }
  });
}
