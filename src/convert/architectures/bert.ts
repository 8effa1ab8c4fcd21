// BertModel (bge, MiniLM, e5...): an encoder with learned positions, separate Q/K/V with biases, post-norm
// layers and a GELU feed-forward, as convert_hf_to_gguf.py's BertModel converts it. Task-head checkpoints
// (BertForMaskedLM) keep the encoder under `bert.`; the pooler and the heads are dropped.
import { InputError } from '../../util/errors.js';
import { encoderFolderKvs, encoderHyperParameters, hparam } from './encoder.js';
import { wordPieceKvs } from '../tokenizer/wordpiece.js';
import type { Architecture, ExpectedTensor, HfConfig, ModelShape } from './types.js';

const LAYER_NAMES: Record<string, string> = {
  'attention.self.query.weight': 'attn_q.weight',
  'attention.self.query.bias': 'attn_q.bias',
  'attention.self.key.weight': 'attn_k.weight',
  'attention.self.key.bias': 'attn_k.bias',
  'attention.self.value.weight': 'attn_v.weight',
  'attention.self.value.bias': 'attn_v.bias',
  'attention.output.dense.weight': 'attn_output.weight',
  'attention.output.dense.bias': 'attn_output.bias',
  'attention.output.LayerNorm.weight': 'attn_output_norm.weight',
  'attention.output.LayerNorm.bias': 'attn_output_norm.bias',
  'intermediate.dense.weight': 'ffn_up.weight',
  'intermediate.dense.bias': 'ffn_up.bias',
  'output.dense.weight': 'ffn_down.weight',
  'output.dense.bias': 'ffn_down.bias',
  'output.LayerNorm.weight': 'layer_output_norm.weight',
  'output.LayerNorm.bias': 'layer_output_norm.bias',
};

const GLOBAL_NAMES: Record<string, string> = {
  'embeddings.word_embeddings.weight': 'token_embd.weight',
  'embeddings.position_embeddings.weight': 'position_embd.weight',
  'embeddings.token_type_embeddings.weight': 'token_types.weight',
  'embeddings.LayerNorm.weight': 'token_embd_norm.weight',
  'embeddings.LayerNorm.bias': 'token_embd_norm.bias',
};

/** Dropped as convert_hf_to_gguf.py drops them: bake serves embeddings, not the pre-training heads. */
function dropped(name: string): boolean {
  return name === 'embeddings.position_ids' || name.startsWith('pooler.') || name.startsWith('cls.predictions') || name.startsWith('cls.seq_relationship');
}

/** The GELU activations llama.cpp's bert graph computes (as GELU; HF's gelu/gelu_new differ by < 1e-3). */
const GELU = new Set(['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast']);

function shape(config: HfConfig, file: string): ModelShape {
  const nEmbd = hparam(config, ['hidden_size'], file, 'int');
  const nHead = hparam(config, ['num_attention_heads'], file, 'int');
  if (nEmbd % nHead !== 0) throw new InputError(`${file}: hidden_size ${nEmbd} is not a multiple of num_attention_heads ${nHead}`, { file, field: 'num_attention_heads' });
  const act = config.hidden_act ?? 'gelu';
  if (typeof act !== 'string' || !GELU.has(act)) {
    throw new InputError(`${file}: hidden_act is ${JSON.stringify(act)}; llama.cpp's bert graph computes GELU`, { file, field: 'hidden_act', expected: [...GELU].join(', ') });
  }
  const pos = config.position_embedding_type ?? 'absolute';
  if (pos !== 'absolute') throw new InputError(`${file}: position_embedding_type is ${JSON.stringify(pos)}`, { file, field: 'position_embedding_type', expected: '"absolute" (llama.cpp\'s bert graph adds learned positions)' });
  return {
    nLayer: hparam(config, ['num_hidden_layers'], file, 'int'),
    nHead,
    nHeadKv: nHead,
    nEmbd,
    nFf: hparam(config, ['intermediate_size'], file, 'int'),
    vocabSize: hparam(config, ['vocab_size'], file, 'int'),
    headDim: nEmbd / nHead,
  };
}

function expectedTensors(config: HfConfig, s: ModelShape, file: string): Map<string, ExpectedTensor> {
  const H = s.nEmbd, I = s.nFf;
  const out = new Map<string, ExpectedTensor>();
  out.set('embeddings.word_embeddings.weight', { shape: [s.vocabSize, H] });
  out.set('embeddings.position_embeddings.weight', { shape: [hparam(config, ['max_position_embeddings'], file, 'int'), H] });
  const types = config.type_vocab_size;
  if (types !== 0) out.set('embeddings.token_type_embeddings.weight', { shape: [typeof types === 'number' ? types : 2, H] });
  out.set('embeddings.LayerNorm.weight', { shape: [H] });
  out.set('embeddings.LayerNorm.bias', { shape: [H] });
  for (let l = 0; l < s.nLayer; l++) {
    const p = `encoder.layer.${l}.`;
    for (const w of ['query', 'key', 'value']) {
      out.set(`${p}attention.self.${w}.weight`, { shape: [H, H] });
      out.set(`${p}attention.self.${w}.bias`, { shape: [H] });
    }
    out.set(`${p}attention.output.dense.weight`, { shape: [H, H] });
    out.set(`${p}attention.output.dense.bias`, { shape: [H] });
    out.set(`${p}attention.output.LayerNorm.weight`, { shape: [H] });
    out.set(`${p}attention.output.LayerNorm.bias`, { shape: [H] });
    out.set(`${p}intermediate.dense.weight`, { shape: [I, H] });
    out.set(`${p}intermediate.dense.bias`, { shape: [I] });
    out.set(`${p}output.dense.weight`, { shape: [H, I] });
    out.set(`${p}output.dense.bias`, { shape: [H] });
    out.set(`${p}output.LayerNorm.weight`, { shape: [H] });
    out.set(`${p}output.LayerNorm.bias`, { shape: [H] });
  }
  return out;
}

function tensorName(name: string): string | null | undefined {
  if (dropped(name)) return null;
  if (name in GLOBAL_NAMES) return GLOBAL_NAMES[name];
  const m = /^encoder\.layer\.(\d+)\.(.+)$/.exec(name);
  const rest = m ? LAYER_NAMES[m[2]!] : undefined;
  return rest === undefined ? undefined : `blk.${Number(m![1])}.${rest}`;
}

/** BertModel.filter_tensors: the `bert.` prefix of task-head checkpoints, and gamma/beta of old ones. */
function canonicalName(name: string): string {
  let n = name.startsWith('bert.') ? name.slice(5) : name;
  if (n.endsWith('.gamma')) n = `${n.slice(0, -6)}.weight`;
  else if (n.endsWith('.beta')) n = `${n.slice(0, -5)}.bias`;
  return n;
}

export const bert: Architecture = {
  hfArchitectures: ['BertModel', 'BertForMaskedLM'],
  ggufArch: 'bert',
  embedding: true,
  sizedBy: { layers: 'num_hidden_layers', all: 'num_hidden_layers, hidden_size, intermediate_size, max_position_embeddings, type_vocab_size, vocab_size' },
  shape,
  hyperParameters: (config, s, file) => encoderHyperParameters('bert', {
    nLayer: s.nLayer,
    contextLength: hparam(config, ['max_position_embeddings'], file, 'int'),
    nEmbd: s.nEmbd,
    nFf: s.nFf,
    nHead: s.nHead,
    layerNormEps: hparam(config, ['layer_norm_eps', 'layer_norm_epsilon', 'norm_epsilon'], file, 'float'),
  }),
  expectedTensors,
  tensorName,
  canonicalName,
  folderKvs: (dir) => encoderFolderKvs('bert', dir),
  tokenizerKvs: wordPieceKvs,
};
