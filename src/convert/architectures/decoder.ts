// The LLaMA-style decoder layout shared by llama, mistral and qwen2: config keys, the tensors they call
// for, tensor names and the rotate-half -> interleaved Q/K permutation (convert_hf_to_gguf.py LlamaModel.permute).
import type { GgufKv } from '../../formats/gguf/index.js';
import { InputError } from '../../util/errors.js';
import type { ExpectedTensor, HfConfig, ModelShape } from './types.js';

export function positiveInt(config: HfConfig, key: string, file: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new InputError(`${file}: ${key} is ${JSON.stringify(config[key])}`, { file, field: key, expected: 'a positive integer' });
  }
  return v;
}

/** A true/false key of config.json; `fallback` when absent or null (as the transformers config class defaults it). */
export function flag(config: HfConfig, key: string, file: string, fallback: boolean): boolean {
  const v = config[key] ?? fallback;
  if (typeof v !== 'boolean') throw new InputError(`${file}: ${key} is ${JSON.stringify(config[key])}`, { file, field: key, expected: 'true or false' });
  return v;
}

export function decoderShape(config: HfConfig, file: string): ModelShape {
  const nHead = positiveInt(config, 'num_attention_heads', file);
  const nEmbd = positiveInt(config, 'hidden_size', file);
  if (config.head_dim == null && nEmbd % nHead !== 0) {
    throw new InputError(`${file}: hidden_size ${nEmbd} is not a multiple of num_attention_heads ${nHead} and head_dim is not given`, { file, field: 'head_dim', expected: 'a positive integer' });
  }
  const shape: ModelShape = {
    nLayer: positiveInt(config, 'num_hidden_layers', file),
    nHead,
    nHeadKv: positiveInt(config, 'num_key_value_heads', file, nHead),
    nEmbd,
    nFf: positiveInt(config, 'intermediate_size', file),
    vocabSize: positiveInt(config, 'vocab_size', file),
    headDim: positiveInt(config, 'head_dim', file, nEmbd / nHead),
  };
  if (shape.nHead % shape.nHeadKv !== 0) {
    throw new InputError(`${file}: num_attention_heads ${shape.nHead} is not a multiple of num_key_value_heads ${shape.nHeadKv}`, { file, field: 'num_key_value_heads' });
  }
  return shape;
}

/** Which optional parts of the decoder a model has; each comes from its config.json (see the architectures). */
export interface DecoderParts {
  /** q_proj, k_proj and v_proj biases. */
  qkvBias: boolean;
  /** o_proj bias. */
  outputBias: boolean;
  /** gate_proj, up_proj and down_proj biases. */
  mlpBias: boolean;
}

/**
 * The tensors a LLaMA-style decoder checkpoint holds, with their HF shapes ([out, in] for projections).
 * lm_head.weight may be left out when the embeddings are tied (tie_word_embeddings, false unless given,
 * as LlamaConfig, MistralConfig and Qwen2Config default it); some tied checkpoints still store it.
 */
export function decoderTensors(config: HfConfig, s: ModelShape, file: string, parts: DecoderParts): Map<string, ExpectedTensor> {
  const out = new Map<string, ExpectedTensor>();
  const q = s.nHead * s.headDim;
  const kv = s.nHeadKv * s.headDim;
  out.set('model.embed_tokens.weight', { shape: [s.vocabSize, s.nEmbd] });
  out.set('model.norm.weight', { shape: [s.nEmbd] });
  out.set('lm_head.weight', { shape: [s.vocabSize, s.nEmbd], optional: flag(config, 'tie_word_embeddings', file, false) });
  for (let l = 0; l < s.nLayer; l++) {
    const p = `model.layers.${l}.`;
    const add = (name: string, shape: number[], when = true): void => {
      if (when) out.set(p + name, { shape });
    };
    add('input_layernorm.weight', [s.nEmbd]);
    add('self_attn.q_proj.weight', [q, s.nEmbd]);
    add('self_attn.k_proj.weight', [kv, s.nEmbd]);
    add('self_attn.v_proj.weight', [kv, s.nEmbd]);
    add('self_attn.q_proj.bias', [q], parts.qkvBias);
    add('self_attn.k_proj.bias', [kv], parts.qkvBias);
    add('self_attn.v_proj.bias', [kv], parts.qkvBias);
    add('self_attn.o_proj.weight', [s.nEmbd, q]);
    add('self_attn.o_proj.bias', [s.nEmbd], parts.outputBias);
    add('post_attention_layernorm.weight', [s.nEmbd]);
    add('mlp.gate_proj.weight', [s.nFf, s.nEmbd]);
    add('mlp.up_proj.weight', [s.nFf, s.nEmbd]);
    add('mlp.down_proj.weight', [s.nEmbd, s.nFf]);
    add('mlp.gate_proj.bias', [s.nFf], parts.mlpBias);
    add('mlp.up_proj.bias', [s.nFf], parts.mlpBias);
    add('mlp.down_proj.bias', [s.nEmbd], parts.mlpBias);
  }
  return out;
}

/** The hyper-parameter keys gguf-py writes for a LLaMA-like decoder (counts as u32, floats as f32). */
export function decoderHyperParameters(arch: string, config: HfConfig, shape: ModelShape, file: string, opts: { ropeDims: boolean }): GgufKv[] {
  const u32 = (k: string, v: number): GgufKv => ({ key: `${arch}.${k}`, type: 'u32', value: v });
  const f32 = (k: string, v: number): GgufKv => ({ key: `${arch}.${k}`, type: 'f32', value: v });
  const kvs: GgufKv[] = [
    u32('vocab_size', shape.vocabSize),
    u32('context_length', positiveInt(config, 'max_position_embeddings', file, 4096)),
    u32('embedding_length', shape.nEmbd),
    u32('feed_forward_length', shape.nFf),
    u32('block_count', shape.nLayer),
    u32('attention.head_count', shape.nHead),
    u32('attention.head_count_kv', shape.nHeadKv),
  ];
  const theta = config.rope_theta;
  if (typeof theta === 'number') kvs.push(f32('rope.freq_base', theta));
  const eps = config.rms_norm_eps;
  if (typeof eps !== 'number') throw new InputError(`${file}: rms_norm_eps is missing`, { file, field: 'rms_norm_eps', expected: 'a number' });
  kvs.push(f32('attention.layer_norm_rms_epsilon', eps));
  const hd = shape.headDim;
  if (typeof config.head_dim === 'number') {
    kvs.push(u32('attention.key_length', hd), u32('attention.value_length', hd));
  }
  if (opts.ropeDims) kvs.push(u32('rope.dimension_count', hd));
  const scaling = config.rope_scaling as Record<string, unknown> | null | undefined;
  if (scaling) {
    const kind = scaling.rope_type ?? scaling.type;
    if (kind === 'linear' && typeof scaling.factor === 'number') {
      kvs.push({ key: `${arch}.rope.scaling.type`, type: 'string', value: 'linear' }, f32('rope.scaling.factor', scaling.factor));
    } else if (kind !== 'default') {
      throw new InputError(`${file}: rope_scaling type ${JSON.stringify(kind)} is not supported by the GGUF converter`, {
        file, field: 'rope_scaling', expected: 'null or {"type": "linear", "factor": N}',
      });
    }
  }
  return kvs;
}

const LAYER_NAMES: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.o_proj.bias': 'attn_output.bias',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
  'mlp.gate_proj.bias': 'ffn_gate.bias',
  'mlp.up_proj.bias': 'ffn_up.bias',
  'mlp.down_proj.bias': 'ffn_down.bias',
};

const GLOBAL_NAMES: Record<string, string> = {
  'model.embed_tokens.weight': 'token_embd.weight',
  'model.norm.weight': 'output_norm.weight',
  'lm_head.weight': 'output.weight',
};

export function decoderTensorName(hfName: string): string | null | undefined {
  if (hfName in GLOBAL_NAMES) return GLOBAL_NAMES[hfName];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  if (!m) return undefined;
  if (m[2]!.endsWith('rotary_emb.inv_freq')) return null;
  const rest = LAYER_NAMES[m[2]!];
  return rest === undefined ? undefined : `blk.${Number(m[1])}.${rest}`;
}

/**
 * HF stores Q/K rows in rotate-half order per head; llama.cpp wants them interleaved. View the rows as
 * [heads, 2, headDim/2] and swap the last two axes: out row h*hd + 2i + j = in row h*hd + j*hd/2 + i.
 */
export function permuteRows(data: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  const hd = rows / heads;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new InputError(`cannot permute ${rows} rows into ${heads} heads of even size`, { expected: 'rows divisible by 2 * heads' });
  const half = hd / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const dst = (h * hd + 2 * i + j) * cols;
        const src = (h * hd + j * half + i) * cols;
        out.set(data.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/** Q/K permutation for 2-D weights and 1-D biases alike (a bias is a matrix with one column). */
export function permuteQk(ggufName: string, data: Float32Array, shape: readonly number[], s: ModelShape): Float32Array {
  const isQ = /\.attn_q\.(weight|bias)$/.test(ggufName);
  const isK = /\.attn_k\.(weight|bias)$/.test(ggufName);
  if (!isQ && !isK) return data;
  const rows = shape[0]!;
  const cols = shape.length > 1 ? shape[1]! : 1;
  return permuteRows(data, rows, cols, isQ ? s.nHead : s.nHeadKv);
}
