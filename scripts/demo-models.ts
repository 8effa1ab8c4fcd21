// Generates the demo's own models into .bake/demo-models/ (deterministic: seeded weights, stable
// writers), so `make demo` shows a text encoder and a small LLaMA through the whole chain with no Hub and no download.
// models.lock pins their bytes like any other model: a change in the generator shows up as a stale lock.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeBpeTokenizer, writeRandomLlama } from '../test/support/gguf-fixtures.js';
import { writeBertFolder } from '../test/support/onnx-bert.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, '.bake', 'demo-models');

const encoder = join(out, 'text-encoder');
await rm(encoder, { recursive: true, force: true });
await writeBertFolder(encoder, { hidden: 128, layers: 2, heads: 4, intermediate: 512, seed: 11 });
// A small LLaMA-architecture checkpoint (safetensors F32, byte-level BPE tokenizer.json) whose rows are
// multiples of 256, so the GGUF path uses real K-quant blocks.
const llama = join(out, 'tiny-llama');
await rm(llama, { recursive: true, force: true });
await writeRandomLlama(llama, { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 300, tied: false }, 21, { tokenizer: 'none' });
await writeBpeTokenizer(llama, 'llama-bpe', 300);
process.stdout.write(`demo models written to ${out}\n`);
