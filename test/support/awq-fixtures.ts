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
