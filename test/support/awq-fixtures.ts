// Test support for the LLaMA forward pass and AWQ: generated checkpoints whose tokenizer transformers.js
// also reads (the GGUF fixtures' tokenizer.json is minimal: llama.cpp needs no decoder, transformers.js does).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeBpeTokenizer, writeRandomLlama, type RandomLlamaShape } from './gguf-fixtures.js';

/** writeBpeTokenizer plus the byte-level decoder transformers.js insists on. */
export async function writeBpeTokenizerForTransformers(dir: string, pre: 'llama-bpe' | 'qwen2', vocabSize: number): Promise<void> {
  await writeBpeTokenizer(dir, pre, vocabSize);
  const file = join(dir, 'tokenizer.json');
  const tok = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  tok.decoder = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  tok.post_processor = null;
  tok.normalizer = null;
  await writeFile(file, JSON.stringify(tok));
}

/** A generated Qwen2 checkpoint (Q/K/V biases) with a byte-level BPE tokenizer.json. */
export async function writeRandomQwen2(dir: string, s: Omit<RandomLlamaShape, 'arch'>, seed: number): Promise<void> {
  await writeRandomLlama(dir, { ...s, arch: 'qwen2' }, seed, { tokenizer: 'none' });
  await writeBpeTokenizerForTransformers(dir, 'qwen2', s.vocab);
}

/**
 * The stand-ins recipes/vllm-awq.yaml bakes (scripts/vllm-awq-models.ts writes them to .bake/): a Qwen2
 * checkpoint bake quantizes to AWQ, and an AutoAWQ GEMM checkpoint as a published AWQ upload would be
 * (LlamaForCausalLM, every linear 4-bit with group 128, made by plain rounding: pure JavaScript, so the
 * bytes are the same on every machine and models.lock can pin them).
 */
export async function writeVllmAwqModels(root: string): Promise<{ chat: string; glm: string }> {
  const { rm, mkdir, copyFile } = await import('node:fs/promises');
  const { openLlamaCheckpoint } = await import('../../src/model/llama/config.js');
  const { checkpointWeights } = await import('../../src/model/llama/weights.js');
  const { planAwq } = await import('../../src/quant/awq/plan.js');
  const { quantizeGroups } = await import('../../src/quant/awq/kernel.js');
  const { globalTensors, layerTensors, quantizationConfig } = await import('../../src/quant/awq/checkpoint.js');
  const { writeSafetensors } = await import('../../src/formats/safetensors/index.js');
  const chat = join(root, 'qwen2-chat');
  const glm = join(root, 'glm-air-awq');
  await rm(root, { recursive: true, force: true });
  await writeRandomQwen2(chat, { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 384, tied: true }, 31);
  const fp = join(root, '.glm-source');
  await writeRandomLlama(fp, { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: false }, 32);
  const ck = await openLlamaCheckpoint(fp);
  const c = ck.config;
  const plan = planAwq(c, { groupSize: 128, shapeRule: 'smaller-group', fp16Fallback: true });
  const w = checkpointWeights(ck);
  const tensors = globalTensors(ck.checkpoint, c);
  for (let l = 0; l < c.nLayer; l++) {
    const layer = await w.layer(l);
    const quantized = Object.fromEntries(Object.entries(layer.linears).map(([n, x]) => [n, quantizeGroups(x.weight, x.out, x.in, plan.groupSize)]));
    tensors.push(...layerTensors('autoawq-gemm', l, layer, quantized, c));
  }
  await mkdir(glm, { recursive: true });
  await writeSafetensors(join(glm, 'model.safetensors'), tensors, { format: 'pt' });
  await writeFile(join(glm, 'config.json'), JSON.stringify({ ...ck.raw, torch_dtype: 'float16', quantization_config: quantizationConfig('autoawq-gemm', plan) }, null, 2) + '\n');
  for (const f of ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json']) await copyFile(join(fp, f), join(glm, f));
  await rm(fp, { recursive: true, force: true });
  return { chat, glm };
}
