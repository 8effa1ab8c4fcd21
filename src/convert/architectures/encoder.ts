// What BERT-family encoders share in convert_hf_to_gguf.py (TextModel + BertModel): the hyper-parameter
// keys, non-causal attention, the pooling type from sentence-transformers' modules.json, and the
// WordPiece vocabulary. bert.ts and nomic-bert.ts add their tensors and config checks.
import { dirname, join } from 'node:path';
import type { GgufKv } from '../../formats/gguf/index.js';
import { InputError } from '../../util/errors.js';
import { insideFolder, readJsonIfExists, readJsonValueIfExists, type Json } from '../files.js';
import type { HfConfig } from './types.js';

/** gguf-py's PoolingType. */
export const POOLING_TYPES = { none: 0, mean: 1, cls: 2, last: 3, rank: 4 } as const;
export type PoolingName = keyof typeof POOLING_TYPES;

/** A config.json number; `keys` in the order find_hparam tries them. */
export function hparam(config: HfConfig, keys: string[], file: string, kind: 'int' | 'float'): number {
  for (const k of keys) {
    const v = config[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || (kind === 'int' && (!Number.isInteger(v) || v <= 0))) {
      throw new InputError(`${file}: ${k} is ${JSON.stringify(v)}`, { file, field: k, expected: kind === 'int' ? 'a positive integer' : 'a number' });
    }
    return v;
  }
  throw new InputError(`${file}: ${keys[0]} is missing`, { file, field: keys[0], expected: kind === 'int' ? 'a positive integer' : 'a number' });
}

export interface EncoderParams {
  nLayer: number;
  contextLength: number;
  nEmbd: number;
  nFf: number;
  nHead: number;
  layerNormEps: number;
  ropeFreqBase?: number;
}

/** TextModel.set_gguf_parameters for an encoder config, in gguf-py's order. */
export function encoderHyperParameters(arch: string, p: EncoderParams): GgufKv[] {
  const u32 = (k: string, v: number): GgufKv => ({ key: `${arch}.${k}`, type: 'u32', value: v });
  const f32 = (k: string, v: number): GgufKv => ({ key: `${arch}.${k}`, type: 'f32', value: v });
  const kvs: GgufKv[] = [
    u32('block_count', p.nLayer),
    u32('context_length', p.contextLength),
    u32('embedding_length', p.nEmbd),
    u32('feed_forward_length', p.nFf),
    u32('attention.head_count', p.nHead),
  ];
  if (p.ropeFreqBase !== undefined) kvs.push(f32('rope.freq_base', p.ropeFreqBase));
  kvs.push(f32('attention.layer_norm_epsilon', p.layerNormEps));
  return kvs;
}

/**
 * The pooling sentence-transformers applies (convert_hf_to_gguf.py's _try_set_pooling_type): the first
 * module of modules.json whose type ends in "Pooling", and its config.json. Undefined without modules.json.
 */
export async function readPooling(dir: string): Promise<PoolingName | undefined> {
  const modulesFile = join(dir, 'modules.json');
  const modules = await readJsonValueIfExists(modulesFile);
  if (modules === undefined) return undefined;
  if (!Array.isArray(modules)) throw new InputError(`${modulesFile}: not a JSON array`, { file: modulesFile, expected: 'sentence-transformers modules: [{ "type": ..., "path": ... }]' });
  const pooling = modules.find((m): m is Json => Boolean(m) && typeof m === 'object' && typeof (m as Json).type === 'string' && ((m as Json).type as string).endsWith('Pooling'));
  if (!pooling) return undefined;
  const path = typeof pooling.path === 'string' ? pooling.path : '';
  const configFile = insideFolder(dir, path ? `${path}/config.json` : 'config.json');
  if (!configFile) {
    throw new InputError(`${modulesFile}: the pooling module's path ${JSON.stringify(pooling.path)} leaves the model folder`, { file: modulesFile, field: 'path', expected: 'a folder inside the model, e.g. 1_Pooling' });
  }
  const c = await readJsonIfExists(configFile);
  if (!c) {
    throw new InputError(`${configFile} is missing (modules.json names ${dirname(configFile)} as the pooling module)`, {
      file: configFile, hint: 'lock the pooling config too, e.g. files: [..., "modules.json", "1_Pooling/config.json"]',
    });
  }
  if (c.pooling_mode_mean_tokens) return 'mean';
  if (c.pooling_mode_cls_token) return 'cls';
  if (c.pooling_mode_lasttoken) return 'last';
  if (c.pooling_mode === 'mean' || c.pooling_mode === 'cls') return c.pooling_mode;
  if (c.pooling_mode === 'lasttoken') return 'last';
  throw new InputError(`${configFile}: a pooling llama.cpp does not have`, {
    file: configFile, expected: 'pooling_mode_mean_tokens, pooling_mode_cls_token or pooling_mode_lasttoken', hint: 'max and weighted-mean pooling are not supported by llama.cpp',
  });
}

/** BertModel.set_gguf_parameters' additions: non-causal attention and the pooling type (when known). */
export async function encoderFolderKvs(arch: string, dir: string): Promise<GgufKv[]> {
  const kvs: GgufKv[] = [{ key: `${arch}.attention.causal`, type: 'bool', value: false }];
  const pooling = await readPooling(dir);
  if (pooling) kvs.push({ key: `${arch}.pooling_type`, type: 'u32', value: POOLING_TYPES[pooling] });
  return kvs;
}

/** config.json must say `key: want` (an assert of convert_hf_to_gguf.py: the GGUF graph computes only that). */
export function requireConfig(config: HfConfig, key: string, want: unknown, file: string, why: string): void {
  const v = config[key] === undefined ? null : config[key];
  if (v !== want) {
    throw new InputError(`${file}: ${key} is ${JSON.stringify(v)}; ${why}`, { file, field: key, expected: JSON.stringify(want), hint: 'this variant of the architecture is not converted' });
  }
}
