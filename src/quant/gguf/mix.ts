// File types (the recipe `type`) and llama-quantize's per-tensor rules (src/llama-quant.cpp) for them:
// which tensors are quantized at all, the Q4_K_M / Q5_K_M upgrades, tied-embedding handling, and the
// fallbacks for rows that do not split into 256- or 32-value blocks. Only the rules these file types reach
// without an imatrix are reproduced.
import { ggmlTypeByName, type GgmlType } from './types.js';

export interface FileType {
  /** Recipe name. */
  name: string;
  /** llama_ftype stored as general.file_type. */
  ftype: number;
  /** Default tensor type name. */
  defaultType: string;
}

const FILE_TYPES: FileType[] = [
  { name: 'F32', ftype: 0, defaultType: 'F32' },
  { name: 'F16', ftype: 1, defaultType: 'F16' },
  { name: 'BF16', ftype: 32, defaultType: 'BF16' },
  { name: 'Q8_0', ftype: 7, defaultType: 'Q8_0' },
  { name: 'Q4_0', ftype: 2, defaultType: 'Q4_0' },
  { name: 'Q4_1', ftype: 3, defaultType: 'Q4_1' },
  { name: 'Q5_0', ftype: 8, defaultType: 'Q5_0' },
  { name: 'Q5_1', ftype: 9, defaultType: 'Q5_1' },
  { name: 'Q4_K_M', ftype: 15, defaultType: 'Q4_K' },
  { name: 'Q5_K_M', ftype: 17, defaultType: 'Q5_K' },
  { name: 'Q6_K', ftype: 18, defaultType: 'Q6_K' },
];

/** llama-quantize's aliases: a bare K type means its _M mix. */
const ALIASES: Record<string, string> = { Q4_K: 'Q4_K_M', Q5_K: 'Q5_K_M' };

export const FILE_TYPE_NAMES: readonly string[] = [...FILE_TYPES.map((f) => f.name), ...Object.keys(ALIASES)];

export function fileTypeByName(name: string): FileType | undefined {
  const canonical = ALIASES[name.toUpperCase()] ?? name.toUpperCase();
  return FILE_TYPES.find((f) => f.name === canonical);
}

export interface MixTensor {
  name: string;
  ne: readonly number[];
  /** Current stored type name. */
  typeName: string;
}

export interface MixModel {
  arch: string;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
}

const NOT_QUANTIZED_SUBSTRINGS = [
  '_norm.weight', 'ffn_gate_inp.weight', 'ffn_gate_tid2eid.weight', 'altup', 'laurel', 'per_layer_model_proj',
  'ssm_conv1d', 'shortconv.conv.weight', 'indexer.k_proj.weight', 'indexer.q_proj.weight', 'attn_rel_b.weight',
  '.position_embd', 'sam.pos_embd', 'sam.neck.', 'sam.net_', '.rel_pos', '.patch_embd', '.patch_merger',
  'a.rvq.codebook', 'mm.a.code_embd', 'time_mix_',
];

/** tensor_allows_quantization: 2-D+ tensors named *weight that are not norms and a few small special tables. */
export function allowsQuantization(t: MixTensor): boolean {
  if (nDims(t.ne) < 2) return false;
  if (!t.name.endsWith('weight')) return false;
  if (NOT_QUANTIZED_SUBSTRINGS.some((s) => t.name.includes(s))) return false;
  if (t.name === 'position_embd.weight' || t.name === 'token_types.weight') return false;
  return true;
}

/** ggml_n_dims: trailing dims of 1 do not count. */
function nDims(ne: readonly number[]): number {
  let n = ne.length;
  while (n > 1 && ne[n - 1] === 1) n--;
  return n;
}

type Category = 'token_embd' | 'output' | 'attn_v' | 'attn_k' | 'attn_q' | 'attn_output' | 'ffn_up' | 'ffn_gate' | 'ffn_down' | 'other';

function category(name: string): Category {
  if (name === 'output.weight') return 'output';
  if (name === 'token_embd.weight' || name === 'per_layer_token_embd.weight') return 'token_embd';
  if (name.includes('attn_qkv.weight') || name.includes('attn_kv_b.weight') || name.includes('attn_v.weight')) return 'attn_v';
  if (name.includes('attn_k.weight')) return 'attn_k';
  if (name.includes('attn_q.weight')) return 'attn_q';
  if (name.includes('attn_output.weight')) return 'attn_output';
  if (name.includes('ffn_up')) return 'ffn_up';
  if (name.includes('ffn_gate')) return 'ffn_gate';
  if (name.includes('ffn_down')) return 'ffn_down';
  return 'other';
}

function useMoreBits(i: number, n: number): boolean {
  return i < Math.trunc(n / 8) || i >= Math.trunc((7 * n) / 8) || (i - Math.trunc(n / 8)) % 3 === 2;
}

function type(name: string): GgmlType {
  const t = ggmlTypeByName(name);
  if (!t) throw new Error(`unknown ggml type ${name}`);
  return t;
}

const isQuantized = (name: string): boolean => type(name).blockSize > 1;

/** tensor_type_fallback: K types on rows not divisible by 256, then F16 when even 32 does not divide. */
function fallback(target: string, ncols: number): string {
  const block = type(target).blockSize;
  if (ncols % block === 0) return target;
  const demoted = ({ Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' } as Record<string, string>)[target] ?? (block <= 32 ? target : undefined);
  if (demoted === undefined) throw new Error(`no fallback type for ${target}`);
  return ncols % type(demoted).blockSize === 0 ? demoted : 'F16';
}

/**
 * The target type of every tensor, in the given order (which must be llama-quantize's order:
 * see sortTensorsLikeLlamaCpp), for a file type. Mirrors llama_tensor_get_type for the types offered here.
 */
export function chooseTensorTypes(tensors: readonly MixTensor[], fileType: FileType, model: MixModel): string[] {
  return explainTensorTypes(tensors, fileType, model).map((c) => c.type);
}

/** A tensor's type and, when it is not the file type's default, the rule that chose it. */
export interface TensorChoice {
  type: string;
  reason?: string;
}

/** chooseTensorTypes with the reason for every tensor that does not take the file type's default type. */
export function explainTensorTypes(tensors: readonly MixTensor[], fileType: FileType, model: MixModel): TensorChoice[] {
  const ftype = fileType.name;
  const tied = !tensors.some((t) => t.name === 'output.weight');
  const nAttnV = tensors.filter((t) => category(t.name) === 'attn_v').length;
  const nFfnDown = model.nLayer;
  const is70B = model.arch === 'llama' && model.nLayer === 80 && model.nHead !== model.nHeadKv;
  let iAttnV = 0;
  let iFfnDown = 0;
  return tensors.map((t): TensorChoice => {
    if (!allowsQuantization(t)) {
      const why = nDims(t.ne) < 2 ? 'one-dimensional (norms, biases): never quantized' : 'llama-quantize never quantizes this tensor';
      return t.typeName === fileType.defaultType ? { type: t.typeName } : { type: t.typeName, reason: `${why}; kept as ${t.typeName}` };
    }
    let newType = fileType.defaultType;
    if (!isQuantized(newType)) return { type: newType };
    let reason: string | undefined;
    const cat = category(t.name);
    const nx = t.ne[0]!;
    if (cat === 'output' || (tied && cat === 'token_embd')) {
      const what = cat === 'output' ? 'output projection' : 'token embedding tied to the output';
      if (nx % type(newType).blockSize !== 0) [newType, reason] = ['Q8_0', `${what}: rows of ${nx} do not split into ${newType} blocks`];
      else if (newType !== 'Q8_0') [newType, reason] = ['Q6_K', `${what}: llama-quantize keeps it at Q6_K`];
    } else if (cat === 'attn_v') {
      if ((ftype === 'Q4_K_M' || ftype === 'Q5_K_M') && useMoreBits(iAttnV, nAttnV)) [newType, reason] = ['Q6_K', `${ftype} mix: more bits for attn_v in the first and last eighth of the layers and every third between`];
      if (is70B && newType === 'Q4_K') [newType, reason] = ['Q5_K', '70B with grouped-query attention: attn_v at Q5_K'];
      iAttnV++;
    } else if (cat === 'ffn_down') {
      if ((ftype === 'Q4_K_M' || ftype === 'Q5_K_M') && useMoreBits(iFfnDown, nFfnDown)) [newType, reason] = ['Q6_K', `${ftype} mix: more bits for ffn_down in the first and last eighth of the layers and every third between`];
      iFfnDown++;
    }
    const chosen = fallback(newType, nx);
    if (chosen !== newType) reason = `rows of ${nx} values do not split into ${newType} blocks of ${type(newType).blockSize}: fallback to ${chosen}`;
    return chosen === fileType.defaultType ? { type: chosen } : { type: chosen, reason: reason ?? `chosen by the ${ftype} rules` };
  });
}

/** llama.cpp's weights_map order: tensors outside blocks first, then by block number; by name within each. */
export function sortTensorsLikeLlamaCpp<T extends { name: string }>(tensors: readonly T[]): T[] {
  const layer = (name: string): number => {
    const m = /^blk\.(-?\d+)\./.exec(name);
    return m ? Number(m[1]) : -1;
  };
  return [...tensors].sort((a, b) => {
    const la = layer(a.name);
    const lb = layer(b.name);
    if (la !== lb) return la - lb;
    return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
}
