// Tokenizer metadata for GGUF, as convert_hf_to_gguf.py writes it: SentencePiece models (tokenizer.model ->
// tokenizer.ggml.model "llama") and byte-level BPE models (tokenizer.json -> "gpt2" with merges and a
// pre-tokenizer name llama.cpp knows).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GgufKv } from '../../formats/gguf/index.js';
import { InputError } from '../../util/errors.js';
import { fileExists, readJsonIfExists, type Json } from '../files.js';
import { parseSentencePieceModel, SPM_PIECE_TYPE } from './sentencepiece.js';
import { chatTemplateKvs, readChatTemplate } from './special-vocab.js';

const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

const u32 = (key: string, value: number): GgufKv => ({ key, type: 'u32', value });

/** Special token ids and add_bos/add_eos flags, from tokenizer_config.json then config.json then fallbacks. */
function specialKvs(tokens: string[], tokConfig: Json | undefined, config: Json, fallback: Partial<Record<'bos' | 'eos' | 'unknown' | 'padding', number>>): GgufKv[] {
  const kvs: GgufKv[] = [];
  const index = new Map<string, number>();
  tokens.forEach((t, i) => { if (!index.has(t)) index.set(t, i); });
  const sources: [keyof typeof fallback, string, string][] = [
    ['bos', 'bos_token', 'bos_token_id'], ['eos', 'eos_token', 'eos_token_id'],
    ['unknown', 'unk_token', 'unk_token_id'], ['padding', 'pad_token', 'pad_token_id'],
  ];
  for (const [kind, tokKey, idKey] of sources) {
    let id: number | undefined;
    const content = tokenContent(tokConfig?.[tokKey]);
    if (content !== undefined) id = index.get(content);
    if (id === undefined) {
      const fromConfig = config[idKey];
      if (typeof fromConfig === 'number') id = fromConfig;
      else if (Array.isArray(fromConfig) && typeof fromConfig[0] === 'number') id = fromConfig[0];
    }
    if (id === undefined) id = fallback[kind];
    if (id !== undefined && Number.isInteger(id) && id >= 0 && id < tokens.length) kvs.push(u32(`tokenizer.ggml.${kind}_token_id`, id));
  }
  for (const flag of ['add_bos_token', 'add_eos_token'] as const) {
    const v = tokConfig?.[flag];
    if (typeof v === 'boolean') kvs.push({ key: `tokenizer.ggml.${flag}`, type: 'bool', value: v });
  }
  return kvs;
}

async function sentencePieceKvs(dir: string, config: Json, tokConfig: Json | undefined): Promise<GgufKv[]> {
  const file = join(dir, 'tokenizer.model');
  const spm = parseSentencePieceModel(await readFile(file), file);
  if (spm.modelType !== 1 && spm.modelType !== 2) {
    throw new InputError(`${file}: SentencePiece model type ${spm.modelType} is not supported`, { file, expected: 'a UNIGRAM (1) or BPE (2) SentencePiece model' });
  }
  const vocabSize = typeof config.vocab_size === 'number' ? config.vocab_size : spm.pieces.length;
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  for (let i = 0; i < vocabSize; i++) {
    tokens.push(`[PAD${i}]`);
    scores.push(-10000);
    types.push(TOKEN_TYPE.UNUSED);
  }
  spm.pieces.slice(0, vocabSize).forEach((p, i) => {
    tokens[i] = p.piece;
    scores[i] = p.score;
    types[i] = p.type === SPM_PIECE_TYPE.UNKNOWN ? TOKEN_TYPE.UNKNOWN
      : p.type === SPM_PIECE_TYPE.CONTROL ? TOKEN_TYPE.CONTROL
      : p.type === SPM_PIECE_TYPE.UNUSED ? TOKEN_TYPE.UNUSED
      : p.type === SPM_PIECE_TYPE.BYTE ? TOKEN_TYPE.BYTE
      : TOKEN_TYPE.NORMAL;
  });
  const added = await readJsonIfExists(join(dir, 'added_tokens.json'));
  for (const [content, id] of Object.entries(added ?? {})) {
    if (typeof id !== 'number' || id < 0 || id >= vocabSize) continue;
    tokens[id] = content;
    scores[id] = -1000;
    types[id] = TOKEN_TYPE.USER_DEFINED;
  }
  const decoder = tokConfig?.added_tokens_decoder;
  if (decoder && typeof decoder === 'object') {
    for (const [idText, data] of Object.entries(decoder as Json)) {
      const id = Number(idText);
      const content = tokenContent(data);
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize || content === undefined) continue;
      const special = (data as Json).special === true || /^<\|.*\|>$/.test(content) || content === '<pad>' || content === '<mask>';
      types[id] = special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
      tokens[id] = special ? content : content.replaceAll('\u2581', ' ');
      scores[id] = -1000;
    }
  }
  const kvs: GgufKv[] = [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' },
    { key: 'tokenizer.ggml.pre', type: 'string', value: 'default' },
    { key: 'tokenizer.ggml.tokens', type: 'array', value: { itemType: 'string', values: tokens } },
    { key: 'tokenizer.ggml.scores', type: 'array', value: { itemType: 'f32', values: scores } },
    { key: 'tokenizer.ggml.token_type', type: 'array', value: { itemType: 'i32', values: types } },
  ];
  const fallback = { unknown: spm.unkId, bos: spm.bosId, eos: spm.eosId, ...(spm.padId >= 0 ? { padding: spm.padId } : {}) };
  kvs.push(...specialKvs(tokens, tokConfig, config, fallback));
  if (typeof tokConfig?.add_prefix_space === 'boolean') kvs.push({ key: 'tokenizer.ggml.add_space_prefix', type: 'bool', value: tokConfig.add_prefix_space });
  return kvs;
}

// Pre-tokenizer split patterns llama.cpp knows by name (llama-vocab.cpp); matched on tokenizer.json's regex.
const KNOWN_PRE_PATTERNS: [string, string][] = [
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 'llama-bpe'],
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 'qwen2'],
];

function splitPatterns(pre: unknown, out: string[] = []): string[] {
  if (!pre || typeof pre !== 'object') return out;
  const p = pre as Json;
  if (p.type === 'Split') {
    const pattern = p.pattern as Json | undefined;
    if (pattern && typeof pattern.Regex === 'string') out.push(pattern.Regex);
    else if (pattern && typeof pattern.String === 'string') out.push(pattern.String);
  }
  if (Array.isArray(p.pretokenizers)) for (const child of p.pretokenizers) splitPatterns(child, out);
  return out;
}

function preTokenizerName(tokJson: Json, file: string): string {
  const patterns = splitPatterns(tokJson.pre_tokenizer);
  if (patterns.length === 0) {
    const t = (tokJson.pre_tokenizer as Json | undefined)?.type;
    if (t === 'ByteLevel') return 'gpt-2';
  }
  for (const [pattern, name] of KNOWN_PRE_PATTERNS) if (patterns.includes(pattern)) return name;
  throw new InputError(`${file}: unrecognised pre-tokenizer ${JSON.stringify(patterns[0] ?? (tokJson.pre_tokenizer as Json | undefined)?.type ?? null)}`, {
    file, field: 'pre_tokenizer', expected: `a pre-tokenizer llama.cpp names (${[...new Set(KNOWN_PRE_PATTERNS.map((k) => k[1]))].join(', ')}, gpt-2)`,
    hint: 'this tokenizer is not supported by the GGUF converter yet',
  });
}

async function bpeKvs(dir: string, config: Json, tokConfig: Json | undefined): Promise<GgufKv[]> {
  const file = join(dir, 'tokenizer.json');
  const tokJson = (await readJsonIfExists(file))!;
  const model = tokJson.model as Json | undefined;
  if (!model || model.type !== 'BPE' || !model.vocab || typeof model.vocab !== 'object') {
    throw new InputError(`${file}: model.type is ${JSON.stringify(model?.type)}`, { file, field: 'model.type', expected: '"BPE" with a vocab object' });
  }
  const vocab = model.vocab as Record<string, unknown>;
  const addedTokens = Array.isArray(tokJson.added_tokens) ? (tokJson.added_tokens as Json[]) : [];
  let maxId = -1;
  for (const id of Object.values(vocab)) if (typeof id === 'number' && id > maxId) maxId = id;
  for (const t of addedTokens) if (typeof t.id === 'number' && t.id > maxId) maxId = t.id;
  const vocabSize = Math.max(typeof config.vocab_size === 'number' ? config.vocab_size : 0, maxId + 1);
  if (vocabSize > 10_000_000) throw new InputError(`${file}: vocabulary of ${vocabSize} tokens is implausible`, { file });
  const tokens: (string | undefined)[] = new Array(vocabSize);
  const types: number[] = new Array(vocabSize).fill(TOKEN_TYPE.NORMAL);
  for (const [tok, id] of Object.entries(vocab)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new InputError(`${file}: token ${JSON.stringify(tok)} has id ${JSON.stringify(id)}`, { file, field: 'model.vocab' });
    tokens[id] = tok;
  }
  for (const t of addedTokens) {
    if (typeof t.id !== 'number' || typeof t.content !== 'string') continue;
    tokens[t.id] = t.content;
    types[t.id] = t.special === true ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
  }
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.UNUSED;
    }
  }
  const merges = Array.isArray(model.merges) ? model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : String(m))) : [];
  const kvs: GgufKv[] = [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' },
    { key: 'tokenizer.ggml.pre', type: 'string', value: preTokenizerName(tokJson, file) },
    { key: 'tokenizer.ggml.tokens', type: 'array', value: { itemType: 'string', values: tokens as string[] } },
    { key: 'tokenizer.ggml.token_type', type: 'array', value: { itemType: 'i32', values: types } },
    { key: 'tokenizer.ggml.merges', type: 'array', value: { itemType: 'string', values: merges } },
  ];
  kvs.push(...specialKvs(tokens as string[], tokConfig, config, {}));
  return kvs;
}

/**
 * Tokenizer KVs for a Hugging Face model folder; prefers tokenizer.model, then tokenizer.json (BPE). The
 * chat template comes last, as gguf-py's SpecialVocab adds it: llama-server's chat endpoint formats with it.
 */
export async function tokenizerKvs(dir: string, config: Json): Promise<GgufKv[]> {
  const tokConfig = await readJsonIfExists(join(dir, 'tokenizer_config.json'));
  const template = chatTemplateKvs(await readChatTemplate(dir));
  if (await fileExists(join(dir, 'tokenizer.model'))) return [...(await sentencePieceKvs(dir, config, tokConfig)), ...template];
  if (await fileExists(join(dir, 'tokenizer.json'))) return [...(await bpeKvs(dir, config, tokConfig)), ...template];
  throw new InputError(`${dir}: no tokenizer.model or tokenizer.json`, {
    file: dir, expected: 'a SentencePiece tokenizer.model or a BPE tokenizer.json beside config.json',
    hint: 'download the tokenizer files of the model too',
  });
}
