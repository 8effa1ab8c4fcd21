// The model's own tokenizer for calibration and eval text: tokenizer.json through transformers.js
// (offline), else tokenizer.model through bake's SentencePiece encoder (llama.cpp's algorithm). Texts are
// encoded without special tokens; `prefix` is what the model's tokenizer puts first (BOS), so a caller
// can start each sequence the way the model sees text at inference.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseSentencePieceModel } from '../../convert/tokenizer/sentencepiece.js';
import { sentencePieceEncoder } from '../../convert/tokenizer/spm-encode.js';
import { InputError } from '../../util/errors.js';
import { loadTokenizer } from '../onnx/text.js';

export interface TextTokenizer {
  /** Token ids of `text`, no special tokens. */
  encode(text: string): number[];
  /** Ids the tokenizer adds before a text (BOS), possibly none. */
  prefix: number[];
  /** Which implementation tokenized: recorded in reports. */
  kind: 'tokenizer.json (transformers.js)' | 'tokenizer.model (SentencePiece, llama.cpp algorithm)';
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function jsonIfAny(p: string): Promise<Record<string, unknown> | undefined> {
  if (!(await isFile(p))) return undefined;
  try {
    return JSON.parse(await readFile(p, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new InputError(`${p}: not valid JSON (${(err as Error).message})`, { file: p });
  }
}

interface HfTokenizer {
  encode(text: string, opts?: { add_special_tokens?: boolean }): number[];
}

export async function loadTextTokenizer(dir: string): Promise<TextTokenizer> {
  if (await isFile(join(dir, 'tokenizer.json'))) {
    const tok = (await loadTokenizer(dir)) as unknown as HfTokenizer;
    const plain = tok.encode('a', { add_special_tokens: false });
    const full = tok.encode('a');
    const prefix = full.length > plain.length && full.slice(full.length - plain.length).every((t, i) => t === plain[i]) ? full.slice(0, full.length - plain.length) : [];
    return { encode: (text) => tok.encode(text, { add_special_tokens: false }), prefix, kind: 'tokenizer.json (transformers.js)' };
  }
  const spmFile = join(dir, 'tokenizer.model');
  if (await isFile(spmFile)) {
    const spm = parseSentencePieceModel(await readFile(spmFile), spmFile);
    const enc = sentencePieceEncoder(spm, spmFile);
    const tc = await jsonIfAny(join(dir, 'tokenizer_config.json'));
    // LLaMA's SentencePiece tokenizer adds BOS unless tokenizer_config.json says otherwise.
    const addBos = typeof tc?.add_bos_token === 'boolean' ? tc.add_bos_token : true;
    return { encode: (text) => enc.encode(text), prefix: addBos && spm.bosId >= 0 ? [spm.bosId] : [], kind: 'tokenizer.model (SentencePiece, llama.cpp algorithm)' };
  }
  throw new InputError(`${dir} has neither tokenizer.json nor tokenizer.model`, {
    file: join(dir, 'tokenizer.json'), expected: 'the model\'s tokenizer files beside config.json', hint: 'add tokenizer.json (or tokenizer.model) to the model\'s files: list',
  });
}
