// The weights of a LLaMA-family decoder as the forward pass reads them: float32, HF layouts ([out, in]
// for linears), one layer at a time. A source is anything that can hand out a layer: the original
// checkpoint, a quantized checkpoint unpacked to its dequantized values, or weights modified in memory.
import { readTensorF32 } from '../../formats/safetensors/index.js';
import { InputError } from '../../util/errors.js';
import type { LlamaCheckpoint, LlamaConfig } from './config.js';

/** The seven linears of a block, by their HF module names within the layer. */
export const LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;
export type LinearName = (typeof LINEARS)[number];

export interface Linear {
  /** Row-major [out, in]. */
  weight: Float32Array;
  bias?: Float32Array;
  out: number;
  in: number;
}

export interface LayerWeights {
  inputNorm: Float32Array;
  postNorm: Float32Array;
  linears: Record<LinearName, Linear>;
}

export interface LlamaWeights {
  config: LlamaConfig;
  embed(): Promise<Float32Array>;
  finalNorm(): Promise<Float32Array>;
  /** [vocab, hidden]; the embeddings when tied. */
  lmHead(): Promise<Float32Array>;
  layer(i: number): Promise<LayerWeights>;
}

/** [out, in] of each linear under this config. */
export function linearShape(c: LlamaConfig, name: LinearName): [number, number] {
  const q = c.nHead * c.headDim;
  const kv = c.nHeadKv * c.headDim;
  switch (name) {
    case 'self_attn.q_proj': return [q, c.nEmbd];
    case 'self_attn.k_proj':
    case 'self_attn.v_proj': return [kv, c.nEmbd];
    case 'self_attn.o_proj': return [c.nEmbd, q];
    case 'mlp.gate_proj':
    case 'mlp.up_proj': return [c.nFf, c.nEmbd];
    case 'mlp.down_proj': return [c.nEmbd, c.nFf];
  }
}

export function hasBias(c: LlamaConfig, name: LinearName): boolean {
  if (name === 'self_attn.o_proj') return c.oBias;
  if (name.startsWith('self_attn.')) return c.qkvBias;
  return c.mlpBias;
}

/** The original weights of a checkpoint, read tensor by tensor (never the whole file). */
export function checkpointWeights(ck: LlamaCheckpoint): LlamaWeights {
  const c = ck.config;
  const read = async (name: string): Promise<Float32Array> => {
    const t = ck.checkpoint.tensors.get(name);
    if (!t) throw new InputError(`${ck.dir}: tensor ${name} is missing`, { file: ck.dir, field: name, hint: 'the download is incomplete or config.json belongs to another model' });
    return readTensorF32(t);
  };
  return {
    config: c,
    embed: () => read('model.embed_tokens.weight'),
    finalNorm: () => read('model.norm.weight'),
    lmHead: () => (c.tied && !ck.checkpoint.tensors.has('lm_head.weight') ? read('model.embed_tokens.weight') : read('lm_head.weight')),
    async layer(i) {
      const p = `model.layers.${i}.`;
      const linears = {} as Record<LinearName, Linear>;
      for (const name of LINEARS) {
        const [out, inF] = linearShape(c, name);
        linears[name] = { weight: await read(`${p}${name}.weight`), out, in: inF, ...(hasBias(c, name) ? { bias: await read(`${p}${name}.bias`) } : {}) };
      }
      return { inputNorm: await read(`${p}input_layernorm.weight`), postNorm: await read(`${p}post_attention_layernorm.weight`), linears };
    },
  };
}

/** A copy of a layer whose arrays can be changed without touching the source's. */
export function cloneLayer(l: LayerWeights): LayerWeights {
  const linears = {} as Record<LinearName, Linear>;
  for (const name of LINEARS) {
    const x = l.linears[name];
    linears[name] = { ...x, weight: x.weight.slice(), ...(x.bias ? { bias: x.bias.slice() } : {}) };
  }
  return { inputNorm: l.inputNorm.slice(), postNorm: l.postNorm.slice(), linears };
}

/** Weights with some layers replaced (the other parts come from `base`). */
export function withLayers(base: LlamaWeights, layer: (i: number, original: () => Promise<LayerWeights>) => Promise<LayerWeights>): LlamaWeights {
  return { ...base, layer: (i) => layer(i, () => base.layer(i)) };
}
