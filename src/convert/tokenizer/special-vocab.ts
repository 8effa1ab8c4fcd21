// gguf-py's SpecialVocab (gguf/vocab.py), as convert_hf_to_gguf.py applies it to WordPiece vocabularies:
// special token ids, add_bos/add_eos/add_sep read from tokenizer.json's post-processor and
// tokenizer_config.json, ids from config.json, the chat template, and BertNormalizer's flags.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GgufKv } from '../../formats/gguf/index.js';
import { fileExists, readJsonIfExists, type Json } from '../files.js';

/** Special token kinds gguf-py writes an id for (its writer has no handler for `cls`: read, never written). */
const WRITTEN_IDS: Record<string, string> = {
  bos: 'tokenizer.ggml.bos_token_id', eos: 'tokenizer.ggml.eos_token_id', unk: 'tokenizer.ggml.unknown_token_id',
  sep: 'tokenizer.ggml.seperator_token_id', pad: 'tokenizer.ggml.padding_token_id', mask: 'tokenizer.ggml.mask_token_id',
  eot: 'tokenizer.ggml.eot_token_id', eom: 'tokenizer.ggml.eom_token_id',
};
const WRITTEN_ADDS: Record<string, string> = {
  bos: 'tokenizer.ggml.add_bos_token', eos: 'tokenizer.ggml.add_eos_token', sep: 'tokenizer.ggml.add_sep_token',
};

export interface SpecialVocab {
  ids: Map<string, number>;
  add: Map<string, boolean>;
  chatTemplate?: string | { name: string; template: string }[];
  lowercase?: boolean;
  stripAccents?: boolean;
}

function content(entry: unknown): string | undefined {
  if (typeof entry === 'string') return entry;
  if (entry && typeof entry === 'object' && typeof (entry as Json).content === 'string') return (entry as Json).content as string;
  return undefined;
}

function specialTokenId(entry: unknown): string | undefined {
  const t = entry && typeof entry === 'object' ? (entry as Json).SpecialToken : undefined;
  const id = t && typeof t === 'object' ? (t as Json).id : undefined;
  return typeof id === 'string' && id ? id : undefined;
}

function sequenceId(entry: unknown): string | undefined {
  const t = entry && typeof entry === 'object' ? (entry as Json).Sequence : undefined;
  const id = t && typeof t === 'object' ? (t as Json).id : undefined;
  return typeof id === 'string' ? id : undefined;
}

/** Reads what gguf-py's SpecialVocab(dir, n_vocab=nVocab) reads (without merges). */
export async function readSpecialVocab(dir: string, nVocab: number): Promise<SpecialVocab> {
  const out: SpecialVocab = { ids: new Map(), add: new Map() };
  let types = ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'];
  const setId = (typ: string, id: unknown): void => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= nVocab || out.ids.has(typ)) return;
    out.ids.set(typ, id);
  };
  const tokenizer = await readJsonIfExists(join(dir, 'tokenizer.json'));
  const addedTokens = Array.isArray(tokenizer?.added_tokens) ? (tokenizer!.added_tokens as Json[]) : [];
  const config = await readJsonIfExists(join(dir, 'tokenizer_config.json'));
  if (tokenizer) {
    const normalizer = tokenizer.normalizer;
    if (normalizer && typeof normalizer === 'object') parseNormalizer(normalizer as Json, out);
    let bos = content(config?.bos_token);
    let cls = content(config?.cls_token);
    let eos = content(config?.eos_token);
    let sep = content(config?.sep_token);
    if (!bos && cls && config) config.bos_token = bos = cls;
    if (!eos && sep && config) config.eos_token = eos = sep;
    const post = tokenizer.post_processor as Json | null | undefined;
    const processors = post && typeof post === 'object' ? (Array.isArray(post.processors) ? (post.processors as Json[]) : [post]) : [];
    for (const p of processors) {
      if (!p || typeof p !== 'object') continue;
      if (p.type === 'RobertaProcessing') {
        out.add.set('bos', true).set('eos', true).set('sep', true);
        if (!cls && config) config.cls_token = cls = (Array.isArray(p.cls) && typeof p.cls[0] === 'string' ? p.cls[0] : bos);
        if (!sep && config) config.sep_token = sep = (Array.isArray(p.sep) && typeof p.sep[0] === 'string' ? p.sep[0] : eos);
        continue;
      }
      if (p.type !== 'TemplateProcessing') continue;
      // gguf-py's "crude parsing" of simple templates: a leading special token means add_bos, a
      // trailing one add_eos, a special token between A and B of the pair template add_sep.
      const single = Array.isArray(p.single) ? p.single : [];
      let pair = Array.isArray(p.pair) ? p.pair : [];
      let first: string | undefined;
      let last: string | undefined;
      if (single.length > 1) {
        first = specialTokenId(single[0]);
        if (first) {
          if (!config) bos = first;
          else if (first !== bos && first !== cls) {
            if (!bos) config.bos_token = bos = first;
            if (!cls) config.cls_token = cls = first;
          }
          out.add.set('bos', first === bos || first === cls);
        }
        last = specialTokenId(single[single.length - 1]);
        if (last) {
          if (!config) eos = last;
          else if (last !== eos) {
            if (!types.includes('eot')) {
              types = [...types, 'eot'];
              config.eot_token = eos;
            } else if (!types.includes('eom')) {
              types = [...types, 'eom'];
              config.eom_token = eos;
            }
            config.eos_token = eos = last;
          }
          out.add.set('eos', last === eos);
        }
      }
      if (pair.length) {
        const start = first && specialTokenId(pair[0]) === first ? 1 : 0;
        const stop = last && specialTokenId(pair[pair.length - 1]) === last ? pair.length - 1 : pair.length;
        pair = pair.slice(start, stop);
        if (pair.length) {
          const a = sequenceId(pair[0]);
          const b = sequenceId(pair[pair.length - 1]);
          const middle = pair.slice(1, -1);
          if (a === 'A' && b === 'B' && middle.length) {
            let addSep = false;
            const m0 = specialTokenId(middle[0]);
            if (m0 && (m0 === sep || m0 === eos) && !last) addSep = true;
            if (middle.length === 2) {
              const m1 = specialTokenId(middle[1]);
              if (m1 && (m1 === sep || m1 === eos)) addSep = true;
            }
            out.add.set('sep', addSep);
            if (addSep && !sep && config) config.sep_token = eos;
          }
        }
      }
    }
  }
  if (config) {
    setChatTemplate(out, config.chat_template ?? (await alternateChatTemplate(dir)));
    for (const typ of types) {
      const add = config[`add_${typ}_token`];
      if (typeof add === 'boolean') out.add.set(typ, add);
      const c = content(config[`${typ}_token`]);
      if (c === undefined) continue;
      // The first added token with that content; a token only in the base vocabulary gives no id here.
      setId(typ, addedTokens.find((t) => t && t.content === c)?.id);
    }
  }
  const modelConfig = await readJsonIfExists(join(dir, 'config.json'));
  if (modelConfig) {
    for (const typ of types) {
      let id = modelConfig[`${typ}_token_id`];
      const text = modelConfig.text_config;
      if ((id === undefined || id === null) && text && typeof text === 'object') id = (text as Json)[`${typ}_token_id`];
      setId(typ, id);
    }
  }
  return out;
}

/** The chat template of a model folder, as SpecialVocab reads it (tokenizer_config.json, else chat_template.jinja / .json). */
export async function readChatTemplate(dir: string): Promise<SpecialVocab['chatTemplate']> {
  const config = await readJsonIfExists(join(dir, 'tokenizer_config.json'));
  if (!config) return undefined;
  const out: SpecialVocab = { ids: new Map(), add: new Map() };
  setChatTemplate(out, config.chat_template ?? (await alternateChatTemplate(dir)));
  return out.chatTemplate;
}

function setChatTemplate(out: SpecialVocab, template: unknown): void {
  if (typeof template === 'string') out.chatTemplate = template;
  else if (Array.isArray(template)) {
    out.chatTemplate = template.flatMap((t) => (t && typeof t === 'object' && typeof (t as Json).name === 'string' && typeof (t as Json).template === 'string' ? [{ name: (t as Json).name as string, template: (t as Json).template as string }] : []));
  }
}

/** chat_template.jinja (newer transformers save the template beside tokenizer_config.json) or chat_template.json. */
async function alternateChatTemplate(dir: string): Promise<unknown> {
  const jinja = join(dir, 'chat_template.jinja');
  if (await fileExists(jinja)) return readFile(jinja, 'utf8');
  return (await readJsonIfExists(join(dir, 'chat_template.json')))?.chat_template;
}

function parseNormalizer(n: Json, out: SpecialVocab): void {
  if (n.type === 'Lowercase') out.lowercase = true;
  else if (n.type === 'StripAccents') out.stripAccents = true;
  else if (n.type === 'BertNormalizer') {
    if ('lowercase' in n) out.lowercase = typeof n.lowercase === 'boolean' ? n.lowercase : undefined;
    if ('strip_accents' in n) out.stripAccents = typeof n.strip_accents === 'boolean' ? n.strip_accents : undefined;
  } else if (n.type === 'Sequence' && Array.isArray(n.normalizers)) {
    for (const child of n.normalizers) if (child && typeof child === 'object') parseNormalizer(child as Json, out);
  }
}

/** The chat template keys gguf-py's add_chat_template writes (a list: the default plus named ones). */
export function chatTemplateKvs(template: SpecialVocab['chatTemplate']): GgufKv[] {
  if (template === undefined) return [];
  if (typeof template === 'string') return [{ key: 'tokenizer.chat_template', type: 'string', value: template }];
  const kvs: GgufKv[] = [];
  let fallback: string | undefined;
  const names: string[] = [];
  for (const t of template) {
    const name = t.name.replace(/[^A-Za-z0-9]/g, '_');
    if (!name) continue;
    if (name === 'default') fallback = t.template;
    else if (!names.includes(name)) {
      names.push(name);
      kvs.push({ key: `tokenizer.chat_template.${name}`, type: 'string', value: t.template });
    }
  }
  if (names.length) kvs.push({ key: 'tokenizer.chat_templates', type: 'array', value: { itemType: 'string', values: names } });
  if (fallback !== undefined) kvs.push({ key: 'tokenizer.chat_template', type: 'string', value: fallback });
  return kvs;
}

/** SpecialVocab.add_to_gguf: ids, add_* flags, chat template, normalizer flags, in gguf-py's order. */
export function specialVocabKvs(v: SpecialVocab): GgufKv[] {
  const kvs: GgufKv[] = [];
  for (const [typ, id] of v.ids) if (WRITTEN_IDS[typ]) kvs.push({ key: WRITTEN_IDS[typ], type: 'u32', value: id });
  for (const [typ, add] of v.add) if (WRITTEN_ADDS[typ]) kvs.push({ key: WRITTEN_ADDS[typ], type: 'bool', value: add });
  kvs.push(...chatTemplateKvs(v.chatTemplate));
  if (v.lowercase !== undefined) kvs.push({ key: 'tokenizer.ggml.normalizer.lowercase', type: 'bool', value: v.lowercase });
  if (v.stripAccents !== undefined) kvs.push({ key: 'tokenizer.ggml.normalizer.strip_accents', type: 'bool', value: v.stripAccents });
  return kvs;
}
