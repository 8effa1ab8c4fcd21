// Generated stand-ins for BERT-family embedding models, from one seeded generator: the Hugging Face
// checkpoint (config.json, model.safetensors, WordPiece tokenizer, sentence-transformers pooling files)
// and an ONNX export of the very same weights (onnx/model.onnx, as the real repos ship one), so what
// llama.cpp computes from the converted GGUF can be checked against onnxruntime on the same numbers.
//   bert:       BertModel (bge / MiniLM style): learned positions, GELU feed-forward, CLS or mean pooling
//   nomic-bert: NomicBertModel (nomic-embed-text-v1.5 style): fused Wqkv, rotary positions (rotate-half,
//               base rotary_emb_base), SwiGLU (fc11 * silu(fc12)), no biases, mean pooling
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AttributeType, DataType, intAttr, intsAttr, makeNode, makeTensor, writeOnnx,
  type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfo,
} from '../../src/formats/onnx/index.js';
import { encodeSafetensors, rng, type StTensor } from './gguf-fixtures.js';
import { bertVocab as buildVocab, wordPieceTokenizerJson as tokenizerJson } from './onnx-bert.js';

export type EncoderArch = 'bert' | 'nomic-bert';

export interface EncoderOptions {
  arch: EncoderArch;
  hidden?: number;
  layers?: number;
  heads?: number;
  intermediate?: number;
  pooling?: 'mean' | 'cls';
  seed?: number;
  /** Leave onnx/model.onnx out (a repo without an export). */
  onnx?: boolean;
}

/** A weight by its Hugging Face name, row-major HF shape ([out, in] for linear layers). */
export interface HfWeight {
  shape: number[];
  data: Float32Array;
}

const LN_EPS = 1e-12;
/** nomic-embed-text-v1.5's rotary base. */
const ROTARY_BASE = 1000;
/** Rows of the ONNX graph's rotary tables (positions it can run). */
const ROTARY_ROWS = 512;
const BERT_POSITIONS = 512;

function defaults(o: EncoderOptions): Required<EncoderOptions> {
  return o.arch === 'bert'
    ? { hidden: 64, layers: 2, heads: 4, intermediate: 128, pooling: 'cls', seed: 5, onnx: true, ...o }
    : { hidden: 128, layers: 2, heads: 4, intermediate: 256, pooling: 'mean', seed: 6, onnx: true, ...o };
}

/** Vocabulary size as config.json states it: nomic pads to a multiple of 64 (pad_vocab_size_multiple). */
function vocabSizeOf(arch: EncoderArch, tokens: number): number {
  return arch === 'nomic-bert' ? Math.ceil(tokens / 64) * 64 : tokens;
}

/** The weights, in checkpoint order, from one seeded generator. */
export function encoderWeights(opts: EncoderOptions): Map<string, HfWeight> {
  const o = defaults(opts);
  const vocab = vocabSizeOf(o.arch, buildVocab().length);
  const r = rng(o.seed);
  const out = new Map<string, HfWeight>();
  const H = o.hidden, I = o.intermediate;
  const add = (name: string, shape: number[], std: number, mean = 0): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = mean + r.normal() * std;
    out.set(name, { shape, data });
  };
  const ln = (p: string): void => {
    add(`${p}.weight`, [H], 0.05, 1);
    add(`${p}.bias`, [H], 0.02);
  };
  add('embeddings.word_embeddings.weight', [vocab, H], 0.5);
  if (o.arch === 'bert') {
    add('embeddings.position_embeddings.weight', [BERT_POSITIONS, H], 0.1);
    add('embeddings.token_type_embeddings.weight', [2, H], 0.1);
    ln('embeddings.LayerNorm');
    for (let l = 0; l < o.layers; l++) {
      const p = `encoder.layer.${l}`;
      for (const w of ['query', 'key', 'value']) {
        add(`${p}.attention.self.${w}.weight`, [H, H], 0.08);
        add(`${p}.attention.self.${w}.bias`, [H], 0.02);
      }
      add(`${p}.attention.output.dense.weight`, [H, H], 0.08);
      add(`${p}.attention.output.dense.bias`, [H], 0.02);
      ln(`${p}.attention.output.LayerNorm`);
      add(`${p}.intermediate.dense.weight`, [I, H], 0.08);
      add(`${p}.intermediate.dense.bias`, [I], 0.02);
      add(`${p}.output.dense.weight`, [H, I], 0.08);
      add(`${p}.output.dense.bias`, [H], 0.02);
      ln(`${p}.output.LayerNorm`);
    }
    // BertModel checkpoints carry a pooler the converter drops.
    add('pooler.dense.weight', [H, H], 0.08);
    add('pooler.dense.bias', [H], 0.02);
  } else {
    add('embeddings.token_type_embeddings.weight', [2, H], 0.1);
    ln('emb_ln');
    for (let l = 0; l < o.layers; l++) {
      const p = `encoder.layers.${l}`;
      add(`${p}.attn.Wqkv.weight`, [3 * H, H], 0.08);
      add(`${p}.attn.out_proj.weight`, [H, H], 0.08);
      add(`${p}.mlp.fc11.weight`, [I, H], 0.08);
      add(`${p}.mlp.fc12.weight`, [I, H], 0.08);
      add(`${p}.mlp.fc2.weight`, [H, I], 0.08);
      ln(`${p}.norm1`);
      ln(`${p}.norm2`);
    }
  }
  return out;
}

export function encoderConfig(opts: EncoderOptions): Record<string, unknown> {
  const o = defaults(opts);
  const vocab = vocabSizeOf(o.arch, buildVocab().length);
  if (o.arch === 'bert') {
    return {
      architectures: ['BertModel'], model_type: 'bert', attention_probs_dropout_prob: 0.1, hidden_act: 'gelu', hidden_dropout_prob: 0.1,
      hidden_size: o.hidden, initializer_range: 0.02, intermediate_size: o.intermediate, layer_norm_eps: LN_EPS,
      max_position_embeddings: BERT_POSITIONS, num_attention_heads: o.heads, num_hidden_layers: o.layers, pad_token_id: 0,
      position_embedding_type: 'absolute', torch_dtype: 'float32', type_vocab_size: 2, use_cache: true, vocab_size: vocab,
    };
  }
  // The keys of nomic-embed-text-v1.5's config.json (NomicBertConfig), at a small size.
  return {
    activation_function: 'swiglu', architectures: ['NomicBertModel'], attn_pdrop: 0.0, bos_token_id: null, causal: false,
    dense_seq_output: true, embd_pdrop: 0.0, eos_token_id: null, fused_bias_fc: true, fused_dropout_add_ln: true,
    initializer_range: 0.02, layer_norm_epsilon: LN_EPS, max_trained_positions: 2048, mlp_fc1_bias: false, mlp_fc2_bias: false,
    model_type: 'nomic_bert', n_embd: o.hidden, n_head: o.heads, n_inner: o.intermediate, n_layer: o.layers, n_positions: 8192,
    pad_vocab_size_multiple: 64, parallel_block: false, parallel_block_tied_norm: false, prenorm: false, qkv_proj_bias: false,
    reorder_and_upcast_attn: false, resid_pdrop: 0.0, rotary_emb_base: ROTARY_BASE, rotary_emb_fraction: 1.0,
    rotary_emb_interleaved: false, rotary_emb_scale_base: null, rotary_scaling_factor: null, scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true, summary_activation: null, summary_first_dropout: 0.0, summary_proj_to_labels: true,
    summary_type: 'cls_index', summary_use_proj: true, torch_dtype: 'float32', type_vocab_size: 2, use_cache: true,
    use_flash_attn: true, use_rms_norm: false, use_xentropy: true, vocab_size: vocab,
  };
}

const vi = (name: string, elem: number, dims: (number | string)[]): ValueInfo => ({
  name, type: { tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } },
});

/** [out, in] -> [in, out] (ONNX MatMul multiplies by the weight on the right). */
function transposed(w: HfWeight): Float32Array {
  const [rows, cols] = w.shape as [number, number];
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w.data[r * cols + c]!;
  return t;
}

/** The forward pass transformers runs for the checkpoint, as an ONNX graph giving last_hidden_state. */
export function encoderOnnx(weights: Map<string, HfWeight>, opts: EncoderOptions): ModelProto {
  const o = defaults(opts);
  const H = o.hidden, nh = o.heads, dh = H / nh;
  const init: TensorProto[] = [];
  const nodes: NodeProto[] = [];
  const W = (name: string): HfWeight => {
    const w = weights.get(name);
    if (!w) throw new Error(`generator: no weight ${name}`);
    return w;
  };
  const raw = (name: string): string => {
    const w = W(name);
    init.push(makeTensor(name, w.shape, w.data));
    return name;
  };
  const c = (name: string, dims: number[], values: number[] | Float32Array): string => { init.push(makeTensor(name, dims, Float32Array.from(values))); return name; };
  const ci = (name: string, values: number[]): string => { init.push(makeTensor(name, [values.length], BigInt64Array.from(values.map(BigInt)))); return name; };
  const n = (op: string, input: string[], output: string, attrs: NodeProto['attribute'] = []): string => { nodes.push(makeNode(op, input, [output], `/${output}`, attrs)); return output; };
  const matmul = (x: string, wName: string, out: string): string => {
    const w = W(wName);
    init.push(makeTensor(`${wName}.T`, [w.shape[1]!, w.shape[0]!], transposed(w)));
    return n('MatMul', [x, `${wName}.T`], out);
  };
  const linear = (x: string, p: string): string => {
    const mm = matmul(x, `${p}.weight`, `${p}_mm`);
    return weights.has(`${p}.bias`) ? n('Add', [mm, raw(`${p}.bias`)], `${p}_out`) : mm;
  };
  const ln = (x: string, p: string): string => n('LayerNormalization', [x, raw(`${p}.weight`), raw(`${p}.bias`)], `${p}_ln`, [intAttr('axis', -1), { name: 'epsilon', type: AttributeType.FLOAT, f: LN_EPS }]);

  ci('zero', [0]); ci('one_i', [1]);
  init.push(makeTensor('start', [], BigInt64Array.from([0n])), makeTensor('step', [], BigInt64Array.from([1n])));
  const seq = n('Squeeze', [n('Gather', [n('Shape', ['input_ids'], 'ids_shape'), 'one_i'], 'seq_len', [intAttr('axis', 0)]), 'zero'], 'seq_scalar');
  const pos = n('Range', ['start', seq, 'step'], 'position_ids');
  let h = n('Add', [n('Gather', [raw('embeddings.word_embeddings.weight'), 'input_ids'], 'word_emb'), n('Gather', [raw('embeddings.token_type_embeddings.weight'), 'token_type_ids'], 'type_emb')], 'emb_wt');
  if (o.arch === 'bert') h = n('Add', [h, n('Gather', [raw('embeddings.position_embeddings.weight'), pos], 'pos_emb')], 'emb_sum');
  h = ln(h, o.arch === 'bert' ? 'embeddings.LayerNorm' : 'emb_ln');

  const maskF = n('Cast', ['attention_mask'], 'mask_f', [intAttr('to', DataType.FLOAT)]);
  const maskAdd = n('Mul', [n('Sub', [c('one_f', [], [1]), maskF], 'mask_inv'), c('neg_big', [], [-10000])], 'mask_add');
  const mask4 = n('Unsqueeze', [maskAdd, ci('mask_axes', [1, 2])], 'mask4');
  ci('heads_shape', [0, 0, nh, dh]); ci('merge_shape', [0, 0, H]);
  c('scale', [], [1 / Math.sqrt(dh)]);

  // Rotary tables (nomic): row p holds cos/sin(p * base^(-2i/dh)) for i < dh/2, repeated for both halves.
  let rotary: ((x: string, name: string) => string) | undefined;
  if (o.arch === 'nomic-bert') {
    const cos = new Float32Array(ROTARY_ROWS * dh), sin = new Float32Array(ROTARY_ROWS * dh);
    for (let p = 0; p < ROTARY_ROWS; p++) {
      for (let i = 0; i < dh / 2; i++) {
        const a = p * Math.pow(ROTARY_BASE, (-2 * i) / dh);
        cos[p * dh + i] = cos[p * dh + i + dh / 2] = Math.cos(a);
        sin[p * dh + i] = sin[p * dh + i + dh / 2] = Math.sin(a);
      }
    }
    c('rot_cos', [ROTARY_ROWS, dh], cos); c('rot_sin', [ROTARY_ROWS, dh], sin);
    ci('rot_shape', [1, -1, 1, dh]);
    const cosP = n('Reshape', [n('Gather', ['rot_cos', pos], 'cos_rows'), 'rot_shape'], 'cos_p');
    const sinP = n('Reshape', [n('Gather', ['rot_sin', pos], 'sin_rows'), 'rot_shape'], 'sin_p');
    ci('half_lo', [0]); ci('half_mid', [dh / 2]); ci('half_hi', [dh]); ci('last_axis', [3]);
    rotary = (x, name) => {
      const x1 = n('Slice', [x, 'half_lo', 'half_mid', 'last_axis'], `${name}_x1`);
      const x2 = n('Slice', [x, 'half_mid', 'half_hi', 'last_axis'], `${name}_x2`);
      const rot = n('Concat', [n('Neg', [x2], `${name}_nx2`), x1], `${name}_rot`, [intAttr('axis', -1)]);
      return n('Add', [n('Mul', [x, cosP], `${name}_xc`), n('Mul', [rot, sinP], `${name}_rs`)], `${name}_roped`);
    };
  }

  for (let l = 0; l < o.layers; l++) {
    const p = o.arch === 'bert' ? `encoder.layer.${l}` : `encoder.layers.${l}`;
    let q: string, k: string, v: string;
    if (o.arch === 'bert') {
      q = linear(h, `${p}.attention.self.query`);
      k = linear(h, `${p}.attention.self.key`);
      v = linear(h, `${p}.attention.self.value`);
    } else {
      const qkv = matmul(h, `${p}.attn.Wqkv.weight`, `${p}.qkv`);
      const parts = ci(`${p}.split`, [H, H, H]);
      nodes.push(makeNode('Split', [qkv, parts], [`${p}.q`, `${p}.k`, `${p}.v`], `/${p}.split`, [intAttr('axis', -1)]));
      [q, k, v] = [`${p}.q`, `${p}.k`, `${p}.v`];
    }
    let q4 = n('Reshape', [q, 'heads_shape'], `${p}.q4`);
    let k4 = n('Reshape', [k, 'heads_shape'], `${p}.k4`);
    const v4 = n('Reshape', [v, 'heads_shape'], `${p}.v4`);
    if (rotary) {
      q4 = rotary(q4, `${p}.q`);
      k4 = rotary(k4, `${p}.k`);
    }
    const qt = n('Transpose', [q4], `${p}.qt`, [intsAttr('perm', [0, 2, 1, 3])]);
    const kt = n('Transpose', [k4], `${p}.kt`, [intsAttr('perm', [0, 2, 3, 1])]);
    const vt = n('Transpose', [v4], `${p}.vt`, [intsAttr('perm', [0, 2, 1, 3])]);
    const scores = n('Add', [n('Mul', [n('MatMul', [qt, kt], `${p}.qk`), 'scale'], `${p}.qk_s`), mask4], `${p}.scores`);
    const probs = n('Softmax', [scores], `${p}.probs`, [intAttr('axis', -1)]);
    const ctx = n('Reshape', [n('Transpose', [n('MatMul', [probs, vt], `${p}.ctx`)], `${p}.ctx_t`, [intsAttr('perm', [0, 2, 1, 3])]), 'merge_shape'], `${p}.ctx_m`);
    if (o.arch === 'bert') {
      h = ln(n('Add', [linear(ctx, `${p}.attention.output.dense`), h], `${p}.attn_res`), `${p}.attention.output.LayerNorm`);
      const up = linear(h, `${p}.intermediate.dense`);
      // transformers' "gelu": the exact erf form.
      const gelu = n('Mul', [n('Mul', [up, c(`${p}.half`, [], [0.5])], `${p}.gelu_h`), n('Add', [n('Erf', [n('Div', [up, c(`${p}.sqrt2`, [], [Math.SQRT2])], `${p}.gelu_d`)], `${p}.gelu_e`), c(`${p}.one`, [], [1])], `${p}.gelu_a`)], `${p}.gelu`);
      h = ln(n('Add', [linear(gelu, `${p}.output.dense`), h], `${p}.ffn_res`), `${p}.output.LayerNorm`);
    } else {
      h = ln(n('Add', [matmul(ctx, `${p}.attn.out_proj.weight`, `${p}.attn_out`), h], `${p}.attn_res`), `${p}.norm1`);
      const up = matmul(h, `${p}.mlp.fc11.weight`, `${p}.up`);
      const gate = matmul(h, `${p}.mlp.fc12.weight`, `${p}.gate`);
      const act = n('Mul', [up, n('Mul', [gate, n('Sigmoid', [gate], `${p}.sig`)], `${p}.silu`)], `${p}.swiglu`);
      h = ln(n('Add', [matmul(act, `${p}.mlp.fc2.weight`, `${p}.down`), h], `${p}.ffn_res`), `${p}.norm2`);
    }
  }
  nodes.push(makeNode('Identity', [h], ['last_hidden_state'], '/last_hidden_state'));
  const graph: GraphProto = {
    name: o.arch, node: nodes, initializer: init, value_info: [],
    input: ['input_ids', 'attention_mask', 'token_type_ids'].map((x) => vi(x, DataType.INT64, ['batch_size', 'sequence_length'])),
    output: [vi('last_hidden_state', DataType.FLOAT, ['batch_size', 'sequence_length', H])],
  };
  return { ir_version: 8, opset_import: [{ domain: '', version: 17 }], producer_name: 'bake-test', graph };
}

/**
 * Writes a model folder as the Hub repo of a sentence-transformers encoder holds it: config.json,
 * model.safetensors (F32), tokenizer.json / vocab.txt / tokenizer_config.json / special_tokens_map.json,
 * modules.json + 1_Pooling/config.json (the pooling convert_hf_to_gguf.py reads) and onnx/model.onnx.
 */
export async function writeEncoderModel(dir: string, opts: EncoderOptions): Promise<string> {
  const o = defaults(opts);
  const weights = encoderWeights(o);
  const config = encoderConfig(o);
  const vocab = buildVocab();
  await mkdir(join(dir, '1_Pooling'), { recursive: true });
  const tensors: StTensor[] = [...weights].map(([name, w]) => ({ name, dtype: 'F32', shape: w.shape, data: new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength) }));
  await writeFile(join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(vocab)));
  await writeFile(join(dir, 'vocab.txt'), vocab.join('\n') + '\n');
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({
    clean_up_tokenization_spaces: true, cls_token: '[CLS]', do_lower_case: true, mask_token: '[MASK]', model_max_length: 512,
    pad_token: '[PAD]', sep_token: '[SEP]', strip_accents: null, tokenize_chinese_chars: true, tokenizer_class: 'BertTokenizer', unk_token: '[UNK]',
  }, null, 2) + '\n');
  await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify({ cls_token: '[CLS]', mask_token: '[MASK]', pad_token: '[PAD]', sep_token: '[SEP]', unk_token: '[UNK]' }) + '\n');
  await writeFile(join(dir, 'modules.json'), JSON.stringify([
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
    { idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' },
  ], null, 2) + '\n');
  await writeFile(join(dir, '1_Pooling', 'config.json'), JSON.stringify({
    word_embedding_dimension: o.hidden, pooling_mode_cls_token: o.pooling === 'cls', pooling_mode_mean_tokens: o.pooling === 'mean',
    pooling_mode_max_tokens: false, pooling_mode_mean_sqrt_len_tokens: false, pooling_mode_weightedmean_tokens: false, pooling_mode_lasttoken: false,
  }, null, 2) + '\n');
  if (o.onnx) {
    await mkdir(join(dir, 'onnx'), { recursive: true });
    await writeOnnx(encoderOnnx(weights, o), join(dir, 'onnx', 'model.onnx'));
  }
  return dir;
}
