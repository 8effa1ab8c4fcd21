// WordPiece vocabularies (BERT, nomic-embed) for GGUF, as convert_hf_to_gguf.py's BertModel.set_vocab
// writes them: tokenizer.ggml.model "bert" (llama.cpp's WPM tokenizer), every token in "phantom space"
// form (a word-start piece gets a leading U+2581, a "##" continuation loses its "##", control tokens stay
// as they are), token types, the token-type count, then gguf-py's SpecialVocab.
import { join } from 'node:path';
import type { GgufKv } from '../../formats/gguf/index.js';
import { InputError } from '../../util/errors.js';
import { readJsonIfExists, type Json } from '../files.js';
import { readSpecialVocab, specialVocabKvs } from './special-vocab.js';

const TOKEN_TYPE = { NORMAL: 1, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5 } as const;
const MAX_VOCAB = 10_000_000;

/** convert_hf_to_gguf.py's does_token_look_special. */
function looksSpecial(t: string): boolean {
  return ['<pad>', '<mask>', '<2mass>', '[@BOS@]'].includes(t)
    || (t.startsWith('<|') && t.endsWith('|>'))
    || (t.startsWith('<\uff5c') && t.endsWith('\uff5c>'))
    || (t.startsWith('<unused') && t.endsWith('>'));
}

export async function wordPieceKvs(dir: string, config: Json): Promise<GgufKv[]> {
  const file = join(dir, 'tokenizer.json');
  const tok = await readJsonIfExists(file);
  if (!tok) {
    throw new InputError(`${dir}: no tokenizer.json`, {
      file, expected: 'the WordPiece tokenizer.json beside config.json', hint: 'lock the model\'s tokenizer files too (tokenizer.json, tokenizer_config.json)',
    });
  }
  const model = tok.model as Json | undefined;
  if (!model || model.type !== 'WordPiece' || !model.vocab || typeof model.vocab !== 'object' || Array.isArray(model.vocab)) {
    throw new InputError(`${file}: model.type is ${JSON.stringify(model?.type ?? null)}`, {
      file, field: 'model.type', expected: '"WordPiece" with a vocab object (a BERT-style tokenizer)',
      hint: model?.type === 'Unigram' ? 'SentencePiece-Unigram encoders (XLM-RoBERTa, nomic-embed-text-v2-moe) are not converted yet' : undefined,
    });
  }
  // tokenizer.vocab of a fast tokenizer: the model's vocabulary plus the added tokens.
  const byId = new Map<number, string>();
  const badId = (t: string, id: unknown) => new InputError(`${file}: token ${JSON.stringify(t)} has id ${JSON.stringify(id)}`, { file, field: 'model.vocab', expected: 'non-negative integer ids' });
  for (const [t, id] of Object.entries(model.vocab as Record<string, unknown>)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) throw badId(t, id);
    byId.set(id, t);
  }
  const added = new Map<string, { id: number; special: boolean }>();
  for (const a of Array.isArray(tok.added_tokens) ? (tok.added_tokens as Json[]) : []) {
    if (!a || typeof a.content !== 'string') continue;
    if (typeof a.id !== 'number' || !Number.isInteger(a.id) || a.id < 0 || a.id >= MAX_VOCAB) throw badId(a.content, a.id);
    byId.set(a.id, a.content);
    added.set(a.content, { id: a.id, special: a.special === true });
  }
  let maxId = -1;
  for (const id of byId.keys()) if (id > maxId) maxId = id;
  const declared = config.vocab_size;
  const vocabSize = typeof declared === 'number' && Number.isInteger(declared) && declared > 0 ? declared : maxId + 1;
  if (maxId >= vocabSize) {
    throw new InputError(`${file}: token id ${maxId} is outside config.json's vocab_size ${vocabSize}`, {
      file, field: 'model.vocab', expected: `ids below vocab_size ${vocabSize}`, hint: 'the tokenizer belongs to another model',
    });
  }
  const tokens: string[] = [];
  const types: number[] = [];
  for (let i = 0; i < vocabSize; i++) {
    const t = byId.get(i);
    let type: number;
    let text: string;
    if (t === undefined) {
      text = `[PAD${i}]`;
      type = TOKEN_TYPE.UNUSED;
    } else if (added.has(t)) {
      const special = added.get(t)!.special || looksSpecial(t);
      type = special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
      text = special ? t : t.replaceAll('\u2581', ' ');
    } else {
      text = t;
      type = TOKEN_TYPE.NORMAL;
    }
    // Phantom space: llama.cpp's WPM tokenizer prefixes each word with U+2581 and matches pieces.
    tokens.push(type === TOKEN_TYPE.CONTROL ? text : text.startsWith('##') ? text.slice(2) : `\u2581${text}`);
    types.push(type);
  }
  const typeCount = config.type_vocab_size;
  const kvs: GgufKv[] = [
    { key: 'tokenizer.ggml.token_type_count', type: 'u32', value: typeof typeCount === 'number' && Number.isInteger(typeCount) && typeCount >= 0 ? typeCount : 1 },
    { key: 'tokenizer.ggml.model', type: 'string', value: 'bert' },
    // convert_hf_to_gguf.py names a pre-tokenizer from a hash of how the tokenizer splits a check text;
    // llama.cpp reads none for WPM vocabularies (pre-tokenizers apply to BPE only), so the generic name.
    { key: 'tokenizer.ggml.pre', type: 'string', value: 'default' },
    { key: 'tokenizer.ggml.tokens', type: 'array', value: { itemType: 'string', values: tokens } },
    { key: 'tokenizer.ggml.token_type', type: 'array', value: { itemType: 'i32', values: types } },
  ];
  kvs.push(...specialVocabKvs(await readSpecialVocab(dir, tokens.length)));
  return kvs;
}
