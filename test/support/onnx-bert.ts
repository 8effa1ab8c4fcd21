// Builds a small BERT-style encoder folder with bake's own ONNX writer: WordPiece tokenizer files written
// here, random but deterministic weights, the graph a BertModel export has (embeddings + LayerNorm,
// self-attention, GELU feed-forward), so transformers.js and onnxruntime treat it like a real encoder.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AttributeType, DataType, intAttr, intsAttr, makeNode, makeTensor, writeOnnx,
  type GraphProto, type ModelProto, type NodeProto, type ValueInfo,
} from '../../src/formats/onnx/index.js';
import { DEFAULT_EVAL_TEXTS, prng } from '../../src/model/onnx/index.js';

export interface BertOptions { hidden?: number; layers?: number; heads?: number; intermediate?: number; labels?: string[]; seed?: number }

const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];

/** The small WordPiece vocabulary of the generated encoders: specials, letters, punctuation, ##pieces, eval-text words. */
export function buildVocab(): string[] {
  const words = new Set<string>();
  for (const t of DEFAULT_EVAL_TEXTS) for (const w of t.toLowerCase().match(/[a-z]+|[0-9]+|[^\sa-z0-9]/g) ?? []) words.add(w);
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789'.split('');
  const punct = '.,!?;:\'"()-/&%$@#*+=<>[]{}'.split('');
  return [...SPECIAL, ...chars, ...punct, ...chars.map((c) => `##${c}`), ...['##s', '##ing', '##ed', '##ly', '##er'], ...[...words].sort()]
    .filter((v, i, a) => a.indexOf(v) === i);
}

/** A BERT (uncased) tokenizer.json over `vocab`, as transformers' BertTokenizerFast saves one. */
export function tokenizerJson(vocab: string[]): unknown {
  const ids = Object.fromEntries(vocab.map((v, i) => [v, i]));
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: SPECIAL.map((t, i) => ({ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: ids },
  };
}

const vi = (name: string, elem: number, dims: (number | string)[]): ValueInfo => ({
  name, type: { tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } },
});

/** The ONNX graph of a BERT encoder (optionally with a classification head giving `logits`). */
export function bertModel(vocabSize: number, o: Required<Omit<BertOptions, 'labels'>> & { labels?: string[] }): ModelProto {
  const rand = prng(o.seed);
  const normal = (n: number, std: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rand() + rand() + rand() - 1.5) * 2 * std; // roughly normal
    return a;
  };
  const H = o.hidden, I = o.intermediate, dh = H / o.heads;
  const init: ReturnType<typeof makeTensor>[] = [];
  const nodes: NodeProto[] = [];
  const w = (name: string, dims: number[], std = 0.08) => { init.push(makeTensor(name, dims, normal(dims.reduce((a, b) => a * b, 1), std))); return name; };
  const c = (name: string, dims: number[], values: number[] | Float32Array) => { init.push(makeTensor(name, dims, Float32Array.from(values))); return name; };
  const ci = (name: string, values: number[]) => { init.push(makeTensor(name, [values.length], BigInt64Array.from(values.map(BigInt)))); return name; };
  const n = (op: string, input: string[], output: string, attrs: NodeProto['attribute'] = []) => { nodes.push(makeNode(op, input, [output], `/${output}`, attrs)); return output; };
  const ones = (k: number) => new Float32Array(k).fill(1);
  const ln = (x: string, p: string) => n('LayerNormalization', [x, c(`${p}.weight`, [H], ones(H).map((v, i) => v + 0.05 * Math.sin(i))), c(`${p}.bias`, [H], normal(H, 0.02))], `${p}_out`, [{ name: 'axis', type: AttributeType.INT, i: -1 }, { name: 'epsilon', type: AttributeType.FLOAT, f: 1e-12 }]);
  const linear = (x: string, p: string, k: number, m: number) => n('Add', [n('MatMul', [x, w(`${p}.weight`, [k, m])], `${p}_mm`), w(`${p}.bias`, [m], 0.02)], `${p}_out`);

  ci('zero', [0]); ci('one_i', [1]); ci('axis1', [1]);
  const seq = n('Gather', [n('Shape', ['input_ids'], 'ids_shape'), 'one_i'], 'seq_len', [intAttr('axis', 0)]);
  init.push(makeTensor('start', [], BigInt64Array.from([0n])), makeTensor('step', [], BigInt64Array.from([1n])));
  const seqScalar = n('Squeeze', [seq, 'zero'], 'seq_scalar');
  const pos = n('Range', ['start', seqScalar, 'step'], 'position_ids');
  let h = n('Add', [n('Add', [n('Gather', [w('embeddings.word_embeddings.weight', [vocabSize, H], 0.5), 'input_ids'], 'word_emb'), n('Gather', [w('embeddings.position_embeddings.weight', [128, H], 0.1), pos], 'pos_emb')], 'emb_wp'), n('Gather', [w('embeddings.token_type_embeddings.weight', [2, H], 0.1), 'token_type_ids'], 'type_emb')], 'emb_sum');
  h = ln(h, 'embeddings.LayerNorm');
  const maskF = n('Cast', ['attention_mask'], 'mask_f', [intAttr('to', DataType.FLOAT)]);
  const maskAdd = n('Mul', [n('Sub', [c('one_f', [], [1]), maskF], 'mask_inv'), c('neg_big', [], [-10000])], 'mask_add');
  const mask4 = n('Unsqueeze', [maskAdd, ci('mask_axes', [1, 2])], 'mask4');
  ci('heads_shape', [0, 0, o.heads, dh]); ci('merge_shape', [0, 0, H]);
  for (let l = 0; l < o.layers; l++) {
    const p = `encoder.layer.${l}`;
    const split = (x: string, name: string, perm: number[]) => n('Transpose', [n('Reshape', [x, 'heads_shape'], `${name}_r`)], `${name}_t`, [intsAttr('perm', perm)]);
    const q = split(linear(h, `${p}.attention.self.query`, H, H), `${p}.q`, [0, 2, 1, 3]);
    const k = split(linear(h, `${p}.attention.self.key`, H, H), `${p}.k`, [0, 2, 3, 1]);
    const v = split(linear(h, `${p}.attention.self.value`, H, H), `${p}.v`, [0, 2, 1, 3]);
    const scores = n('Add', [n('Mul', [n('MatMul', [q, k], `${p}.qk`), c(`${p}.scale`, [], [1 / Math.sqrt(dh)])], `${p}.qk_s`), mask4], `${p}.scores`);
    const probs = n('Softmax', [scores], `${p}.probs`, [intAttr('axis', -1)]);
    const ctx = n('Reshape', [n('Transpose', [n('MatMul', [probs, v], `${p}.ctx`)], `${p}.ctx_t`, [intsAttr('perm', [0, 2, 1, 3])]), 'merge_shape'], `${p}.ctx_m`);
    h = ln(n('Add', [linear(ctx, `${p}.attention.output.dense`, H, H), h], `${p}.attn_res`), `${p}.attention.output.LayerNorm`);
    const up = linear(h, `${p}.intermediate.dense`, H, I);
    const gelu = n('Mul', [n('Mul', [up, c(`${p}.half`, [], [0.5])], `${p}.gelu_h`), n('Add', [n('Erf', [n('Div', [up, c(`${p}.sqrt2`, [], [Math.SQRT2])], `${p}.gelu_d`)], `${p}.gelu_e`), c(`${p}.one`, [], [1])], `${p}.gelu_a`)], `${p}.gelu`);
    h = ln(n('Add', [linear(gelu, `${p}.output.dense`, I, H), h], `${p}.ffn_res`), `${p}.output.LayerNorm`);
  }
  const outputs: ValueInfo[] = [];
  if (o.labels) {
    const cls = n('Gather', [h, 'zero'], 'cls_token', [intAttr('axis', 1)]);
    const pooled = n('Tanh', [linear(n('Squeeze', [cls, 'axis1'], 'cls_sq'), 'bert.pooler.dense', H, H)], 'pooled');
    nodes.push(makeNode('Add', [n('MatMul', [pooled, w('classifier.weight', [H, o.labels.length], 0.5)], 'cls_mm'), w('classifier.bias', [o.labels.length], 0.1)], ['logits'], '/logits'));
    outputs.push(vi('logits', DataType.FLOAT, ['batch_size', o.labels.length]));
  } else {
    nodes.push(makeNode('Identity', [h], ['last_hidden_state'], '/last_hidden_state'));
    outputs.push(vi('last_hidden_state', DataType.FLOAT, ['batch_size', 'sequence_length', H]));
  }
  const graph: GraphProto = {
    name: 'bert', node: nodes, initializer: init, value_info: [], output: outputs,
    input: ['input_ids', 'attention_mask', 'token_type_ids'].map((x) => vi(x, DataType.INT64, ['batch_size', 'sequence_length'])),
  };
  return { ir_version: 8, opset_import: [{ domain: '', version: 17 }], producer_name: 'bake-test', graph };
}

/** Writes a complete model folder (config, tokenizer, onnx/model.onnx); returns the folder. */
export async function writeBertFolder(dir: string, opts: BertOptions = {}): Promise<string> {
  const o = { hidden: 64, layers: 2, heads: 4, intermediate: 128, seed: 7, ...opts };
  const vocab = buildVocab();
  await mkdir(join(dir, 'onnx'), { recursive: true });
  const labels = opts.labels;
  const config: Record<string, unknown> = {
    model_type: 'bert', architectures: [labels ? 'BertForSequenceClassification' : 'BertModel'], hidden_size: o.hidden, num_hidden_layers: o.layers,
    num_attention_heads: o.heads, intermediate_size: o.intermediate, vocab_size: vocab.length, max_position_embeddings: 128, type_vocab_size: 2, hidden_act: 'gelu', layer_norm_eps: 1e-12,
  };
  if (labels) {
    config.id2label = Object.fromEntries(labels.map((l, i) => [String(i), l]));
    config.label2id = Object.fromEntries(labels.map((l, i) => [l, i]));
  }
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(vocab)));
  await writeFile(join(dir, 'vocab.txt'), vocab.join('\n') + '\n');
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'BertTokenizer', do_lower_case: true, model_max_length: 128, cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', mask_token: '[MASK]' }));
  await writeFile(join(dir, 'special_tokens_map.json'), JSON.stringify({ cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', mask_token: '[MASK]' }));
  await writeOnnx(bertModel(vocab.length, { ...o, labels }), join(dir, 'onnx', 'model.onnx'));
  return dir;
}
