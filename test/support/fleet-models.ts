// The stand-ins of recipes/chat-llamacpp.yaml: generated, deterministic models under the names of the
// real Hub repos they stand for (no Hub here), served by the loopback test Hub (test/support/hub-server.ts).
//   Qwen/Qwen2.5-0.5B-Instruct      a Qwen2 decoder (safetensors, byte-level BPE with ChatML specials and
//                                   chat template), rows of 256 so the K-quants are real K-quants
//   nomic-ai/nomic-embed-text-v1.5  a nomic-bert encoder with its ONNX export (test/support/embedding-models.ts)
//   BAAI/bge-small-en-v1.5          a BERT encoder (CLS pooling) with its ONNX export
// models.lock pins their bytes: a change in a generator shows up as a stale lock.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeBpeTokenizer, writeRandomLlama } from './gguf-fixtures.js';
import { writeEncoderModel } from './embedding-models.js';
import { filesFromDir, type HubRepoSpec } from './hub-server.js';

export const CHAT_REPO = 'Qwen/Qwen2.5-0.5B-Instruct';
export const NOMIC_REPO = 'nomic-ai/nomic-embed-text-v1.5';
export const BGE_REPO = 'BAAI/bge-small-en-v1.5';

/** Qwen2.5's ChatML template (as its tokenizer_config.json has it, tools left out). */
export const CHATML_TEMPLATE = "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

const CHAT_VOCAB = 300;

async function writeChat(dir: string): Promise<void> {
  await writeRandomLlama(dir, { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, vocab: CHAT_VOCAB, tied: true, arch: 'qwen2' }, 31, { tokenizer: 'none' });
  await writeBpeTokenizer(dir, 'qwen2', CHAT_VOCAB);
  // A chat model's context: long prompts fit (the benchmark measures prompt processing), as Qwen2.5's 32k does.
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 4096, sliding_window: 4096, use_sliding_window: false }, null, 2));
  // ChatML's end-of-turn token beside <|endoftext|> and <|im_start|>, and the chat template.
  const tok = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8')) as { added_tokens: { id: number; content: string; special: boolean }[] };
  tok.added_tokens.push({ id: CHAT_VOCAB - 3, content: '<|im_end|>', special: true });
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: null, eos_token: '<|im_end|>', pad_token: '<|endoftext|>', add_bos_token: false, chat_template: CHATML_TEMPLATE }, null, 2) + '\n');
  await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: CHAT_VOCAB - 2, eos_token_id: [CHAT_VOCAB - 3, CHAT_VOCAB - 2], do_sample: false }, null, 2) + '\n');
}

/** Writes every stand-in under `root`/<org>/<name>/ (from scratch); returns the folders by repo. */
export async function writeFleetModels(root: string): Promise<Record<string, string>> {
  const dirs = { [CHAT_REPO]: join(root, CHAT_REPO), [NOMIC_REPO]: join(root, NOMIC_REPO), [BGE_REPO]: join(root, BGE_REPO) };
  for (const d of Object.values(dirs)) {
    await rm(d, { recursive: true, force: true });
    await mkdir(d, { recursive: true });
  }
  await writeChat(dirs[CHAT_REPO]!);
  await writeEncoderModel(dirs[NOMIC_REPO]!, { arch: 'nomic-bert', hidden: 128, layers: 2, heads: 4, intermediate: 256, seed: 6 });
  await writeEncoderModel(dirs[BGE_REPO]!, { arch: 'bert', hidden: 64, layers: 2, heads: 4, intermediate: 128, pooling: 'cls', seed: 5 });
  return dirs;
}

/** The stand-ins as loopback Hub repos under their real names. */
export async function fleetHubRepos(root: string): Promise<Record<string, HubRepoSpec>> {
  const dirs = await writeFleetModels(root);
  const repos: Record<string, HubRepoSpec> = {};
  for (const [repo, dir] of Object.entries(dirs)) repos[repo] = { files: await filesFromDir(dir) };
  return repos;
}
