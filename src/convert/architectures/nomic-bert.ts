// NomicBertModel (nomic-embed-text-v1 / v1.5): a BERT whose positions are rotary (rotate-half, base
// rotary_emb_base, which llama.cpp's NEOX RoPE computes as stored: no permutation), with a fused Wqkv,
// a SwiGLU feed-forward (fc11 is the up projection, fc12 the gate) and no biases. convert_hf_to_gguf.py's
// NomicBertModel refuses every other variant of the config; so does this.
import { InputError } from '../../util/errors.js';
import { encoderFolderKvs, encoderHyperParameters, hparam, requireConfig } from './encoder.js';
import { wordPieceKvs } from '../tokenizer/wordpiece.js';
import type { Architecture, ExpectedTensor, HfConfig, ModelShape } from './types.js';

const LAYER_NAMES: Record<string, string> = {
  'attn.Wqkv.weight': 'attn_qkv.weight',
  'attn.out_proj.weight': 'attn_output.weight',
  'norm1.weight': 'attn_output_norm.weight',
  'norm1.bias': 'attn_output_norm.bias',
  'mlp.fc11.weight': 'ffn_up.weight',
  'mlp.fc12.weight': 'ffn_gate.weight',
  'mlp.fc2.weight': 'ffn_down.weight',
  'norm2.weight': 'layer_output_norm.weight',
  'norm2.bias': 'layer_output_norm.bias',
};

const GLOBAL_NAMES: Record<string, string> = {
  'embeddings.word_embeddings.weight': 'token_embd.weight',
  'embeddings.token_type_embeddings.weight': 'token_types.weight',
  'emb_ln.weight': 'token_embd_norm.weight',
  'emb_ln.bias': 'token_embd_norm.bias',
};

/**
 * The trained context convert_hf_to_gguf.py writes: nomic-embed-text v1/v1.5 say n_positions 8192 but
 * were trained on 2048 tokens. Other combinations are refused there, and here.
 */
function contextLength(config: HfConfig, file: string): number {
  const npos = hparam(config, ['n_positions'], file, 'int');
  const mtp = config.max_trained_positions ?? 2048;
  if (npos === 8192 && mtp === 2048) return 2048;
  throw new InputError(`${file}: n_positions ${npos} with max_trained_positions ${JSON.stringify(mtp)} is not a nomic-embed-text v1/v1.5 config`, {
    file, field: 'n_positions', expected: 'n_positions 8192 and max_trained_positions 2048 (nomic-embed-text-v1.5)',
  });
}

function shape(config: HfConfig, file: string): ModelShape {
  if (config.moe_every_n_layers) {
    throw new InputError(`${file}: moe_every_n_layers is set: a mixture-of-experts nomic-bert (nomic-embed-text-v2-moe)`, { file, field: 'moe_every_n_layers', hint: 'nomic-bert-moe is not converted yet' });
  }
  // The asserts of NomicBertModel.__init__: what llama.cpp's nomic-bert graph computes.
  requireConfig(config, 'activation_function', 'swiglu', file, 'llama.cpp\'s nomic-bert feed-forward is SwiGLU');
  requireConfig(config, 'causal', false, file, 'an embedding encoder attends both ways');
  for (const k of ['qkv_proj_bias', 'mlp_fc1_bias', 'mlp_fc2_bias']) requireConfig(config, k, false, file, 'nomic-bert has no biases');
  requireConfig(config, 'prenorm', false, file, 'the layer norms come after each block');
  requireConfig(config, 'rotary_emb_fraction', 1.0, file, 'RoPE covers the whole head');
  requireConfig(config, 'rotary_emb_interleaved', false, file, 'RoPE rotates halves (NEOX), not pairs');
  requireConfig(config, 'rotary_emb_scale_base', null, file, 'no xPos scaling');
  contextLength(config, file);
  const nEmbd = hparam(config, ['n_embd', 'hidden_size'], file, 'int');
  const nHead = hparam(config, ['n_head', 'num_attention_heads'], file, 'int');
  if (nEmbd % nHead !== 0 || (nEmbd / nHead) % 2 !== 0) throw new InputError(`${file}: n_embd ${nEmbd} does not split into ${nHead} heads of even width`, { file, field: 'n_head' });
  return {
    nLayer: hparam(config, ['n_layer', 'num_hidden_layers'], file, 'int'),
    nHead,
    nHeadKv: nHead,
    nEmbd,
    nFf: hparam(config, ['n_inner', 'intermediate_size'], file, 'int'),
    vocabSize: hparam(config, ['vocab_size'], file, 'int'),
    headDim: nEmbd / nHead,
  };
}

function expectedTensors(config: HfConfig, s: ModelShape): Map<string, ExpectedTensor> {
  const H = s.nEmbd, I = s.nFf;
  const out = new Map<string, ExpectedTensor>();
  out.set('embeddings.word_embeddings.weight', { shape: [s.vocabSize, H] });
  const types = config.type_vocab_size;
  if (types !== 0) out.set('embeddings.token_type_embeddings.weight', { shape: [typeof types === 'number' ? types : 2, H] });
  out.set('emb_ln.weight', { shape: [H] });
  out.set('emb_ln.bias', { shape: [H] });
  for (let l = 0; l < s.nLayer; l++) {
    const p = `encoder.layers.${l}.`;
    out.set(`${p}attn.Wqkv.weight`, { shape: [3 * H, H] });
    out.set(`${p}attn.out_proj.weight`, { shape: [H, H] });
    out.set(`${p}mlp.fc11.weight`, { shape: [I, H] });
    out.set(`${p}mlp.fc12.weight`, { shape: [I, H] });
    out.set(`${p}mlp.fc2.weight`, { shape: [H, I] });
    for (const n of ['norm1', 'norm2']) {
      out.set(`${p}${n}.weight`, { shape: [H] });
      out.set(`${p}${n}.bias`, { shape: [H] });
    }
  }
  return out;
}

function tensorName(name: string): string | null | undefined {
  if (name.endsWith('.rotary_emb.inv_freq')) return null;
  if (name in GLOBAL_NAMES) return GLOBAL_NAMES[name];
  const m = /^encoder\.layers\.(\d+)\.(.+)$/.exec(name);
  const rest = m ? LAYER_NAMES[m[2]!] : undefined;
  return rest === undefined ? undefined : `blk.${Number(m![1])}.${rest}`;
}

export const nomicBert: Architecture = {
  hfArchitectures: ['NomicBertModel'],
  ggufArch: 'nomic-bert',
  embedding: true,
  sizedBy: { layers: 'n_layer', all: 'n_layer, n_embd, n_inner, type_vocab_size, vocab_size' },
  shape,
  hyperParameters: (config, s, file) => encoderHyperParameters('nomic-bert', {
    nLayer: s.nLayer,
    contextLength: contextLength(config, file),
    nEmbd: s.nEmbd,
    nFf: s.nFf,
    nHead: s.nHead,
    ropeFreqBase: config.rotary_emb_base == null ? undefined : hparam(config, ['rotary_emb_base'], file, 'float'),
    layerNormEps: hparam(config, ['layer_norm_eps', 'layer_norm_epsilon', 'norm_epsilon'], file, 'float'),
  }),
  expectedTensors: (config, s) => expectedTensors(config, s),
  tensorName,
  folderKvs: (dir) => encoderFolderKvs('nomic-bert', dir),
  tokenizerKvs: wordPieceKvs,
};
