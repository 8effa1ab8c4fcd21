// ONNX graphs of a LLaMA-family decoder, written by hand with src/formats/onnx: one decoder block, its
// attention and MLP alone (AWQ's loss is measured on their outputs), the final norm + lm_head, and two
// small helpers (a linear; per-group partial products for the clip search). Weights are graph INPUTS,
// not initializers: one session serves every layer, and a candidate set of weights costs a run, not a
// new session. Hidden states are [B, L, H]; RoPE's cos/sin [L, head_dim] and the causal mask [L, L]
// come from the caller, so positions are plain data.
//
// The math follows transformers' LlamaDecoderLayer: RMSNorm (x / sqrt(mean(x^2) + eps) * w), RoPE in
// rotate-half form on HF's Q/K row order, grouped-query attention (query head h reads kv head
// h / (heads / kv_heads)), softmax(QK^T / sqrt(head_dim) + mask) V, o_proj, residual, RMSNorm, SwiGLU
// (down(silu(gate x) * up x)), residual.
import { AttributeType, DataType, encodeModel, makeNode, makeTensor, type AttributeProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfo } from '../../formats/onnx/index.js';
import type { LlamaConfig } from './config.js';

const OPSET = 17;

type Dim = number | string;

class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly inits: TensorProto[] = [];
  private n = 0;

  input(name: string, dims: Dim[], type: number = DataType.FLOAT): string {
    this.inputs.push(valueInfo(name, dims, type));
    return name;
  }

  output(name: string, from: string, dims: Dim[]): void {
    this.op('Identity', [from], [], name);
    this.outputs.push(valueInfo(name, dims, DataType.FLOAT));
  }

  op(type: string, inputs: string[], attrs: AttributeProto[] = [], out?: string): string {
    const o = out ?? `${type.toLowerCase()}_${this.n}`;
    this.nodes.push(makeNode(type, inputs, [o], `${type}_${this.n++}`, attrs));
    return o;
  }

  ints(values: number[]): string {
    const name = `const_i64_${this.n++}`;
    this.inits.push(makeTensor(name, [values.length], BigInt64Array.from(values.map(BigInt)), DataType.INT64));
    return name;
  }

  scalar(value: number): string {
    const name = `const_f32_${this.n++}`;
    this.inits.push(makeTensor(name, [], Float32Array.of(value)));
    return name;
  }

  model(name: string): ModelProto {
    return {
      ir_version: 8,
      opset_import: [{ domain: '', version: OPSET }],
      producer_name: 'bake',
      graph: { name, node: this.nodes, initializer: this.inits, input: this.inputs, output: this.outputs, value_info: [] },
    };
  }
}

function valueInfo(name: string, dims: Dim[], elemType: number): ValueInfo {
  return { name, type: { tensor_type: { elem_type: elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } } };
}

const intsAttr = (name: string, ints: number[]): AttributeProto => ({ name, type: AttributeType.INTS, ints });
const intAttr = (name: string, i: number): AttributeProto => ({ name, type: AttributeType.INT, i });

/** x @ W^T (+ b) for W given as [out, in]; ORT fuses the transpose into the product. */
function linear(g: GraphBuilder, x: string, w: string, b?: string): string {
  const y = g.op('MatMul', [x, g.op('Transpose', [w], [intsAttr('perm', [1, 0])])]);
  return b ? g.op('Add', [y, b]) : y;
}

function rmsNorm(g: GraphBuilder, x: string, w: string, eps: number): string {
  const ms = g.op('ReduceMean', [g.op('Mul', [x, x])], [intsAttr('axes', [-1]), intAttr('keepdims', 1)]);
  const rms = g.op('Sqrt', [g.op('Add', [ms, g.scalar(eps)])]);
  return g.op('Mul', [g.op('Div', [x, rms]), w]);
}

/** Rotate-half RoPE on [B, heads, L, hd]: x * cos + cat(-x2, x1) * sin. */
function rope(g: GraphBuilder, x: string, cos: string, sin: string, hd: number): string {
  const half = hd / 2;
  const x1 = g.op('Slice', [x, g.ints([0]), g.ints([half]), g.ints([3])]);
  const x2 = g.op('Slice', [x, g.ints([half]), g.ints([hd]), g.ints([3])]);
  const rot = g.op('Concat', [g.op('Neg', [x2]), x1], [intAttr('axis', 3)]);
  return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rot, sin])]);
}

interface AttnNames { wq: string; wk: string; wv: string; wo: string; bq?: string; bk?: string; bv?: string; bo?: string }

/** Attention over normalized [B, L, H] input; returns [o_proj input (ctx), output]. */
function attention(g: GraphBuilder, c: LlamaConfig, x: string, w: AttnNames, cos: string, sin: string, mask: string): { ctx: string; out: string } {
  const hd = c.headDim;
  const rep = c.nHead / c.nHeadKv;
  const heads = (t: string, n: number) => g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, n, hd])])], [intsAttr('perm', [0, 2, 1, 3])]);
  const q = rope(g, heads(linear(g, x, w.wq, w.bq), c.nHead), cos, sin, hd);
  const k = rope(g, heads(linear(g, x, w.wk, w.bk), c.nHeadKv), cos, sin, hd);
  const v = heads(linear(g, x, w.wv, w.bv), c.nHeadKv);
  // Query heads grouped by the kv head they read: [B, kv, rep, L, hd] against [B, kv, 1, L, hd].
  const q5 = g.op('Reshape', [q, g.ints([0, c.nHeadKv, rep, -1, hd])]);
  const k5 = g.op('Unsqueeze', [k, g.ints([2])]);
  const v5 = g.op('Unsqueeze', [v, g.ints([2])]);
  const scores = g.op('Mul', [g.op('MatMul', [q5, g.op('Transpose', [k5], [intsAttr('perm', [0, 1, 2, 4, 3])])]), g.scalar(1 / Math.sqrt(hd))]);
  const probs = g.op('Softmax', [g.op('Add', [scores, mask])], [intAttr('axis', -1)]);
  const o5 = g.op('MatMul', [probs, v5]);
  const o4 = g.op('Transpose', [g.op('Reshape', [o5, g.ints([0, c.nHead, -1, hd])])], [intsAttr('perm', [0, 2, 1, 3])]);
  const ctx = g.op('Reshape', [o4, g.ints([0, 0, c.nHead * hd])]);
  return { ctx, out: linear(g, ctx, w.wo, w.bo) };
}

interface MlpNames { wg: string; wu: string; wd: string; bg?: string; bu?: string; bd?: string }

function mlp(g: GraphBuilder, x: string, w: MlpNames): { act: string; out: string } {
  const gate = linear(g, x, w.wg, w.bg);
  const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), linear(g, x, w.wu, w.bu)]);
  return { act, out: linear(g, act, w.wd, w.bd) };
}

function attnInputs(g: GraphBuilder, c: LlamaConfig): AttnNames {
  const q = c.nHead * c.headDim;
  const kv = c.nHeadKv * c.headDim;
  return {
    wq: g.input('wq', [q, c.nEmbd]), wk: g.input('wk', [kv, c.nEmbd]), wv: g.input('wv', [kv, c.nEmbd]), wo: g.input('wo', [c.nEmbd, q]),
    ...(c.qkvBias ? { bq: g.input('bq', [q]), bk: g.input('bk', [kv]), bv: g.input('bv', [kv]) } : {}),
    ...(c.oBias ? { bo: g.input('bo', [c.nEmbd]) } : {}),
  };
}

function mlpInputs(g: GraphBuilder, c: LlamaConfig): MlpNames {
  return {
    wg: g.input('wg', [c.nFf, c.nEmbd]), wu: g.input('wu', [c.nFf, c.nEmbd]), wd: g.input('wd', [c.nEmbd, c.nFf]),
    ...(c.mlpBias ? { bg: g.input('bg', [c.nFf]), bu: g.input('bu', [c.nFf]), bd: g.input('bd', [c.nEmbd]) } : {}),
  };
}

function positionInputs(g: GraphBuilder, c: LlamaConfig): { cos: string; sin: string; mask: string } {
  return { cos: g.input('cos', ['L', c.headDim]), sin: g.input('sin', ['L', c.headDim]), mask: g.input('mask', ['L', 'L']) };
}

/**
 * One decoder block. Outputs: `out` (the next block's input) and what AWQ calibrates on: `attn_in`
 * (input_layernorm output: q/k/v input), `o_in` (o_proj input), `mlp_in` (post_attention_layernorm
 * output: gate/up input), `down_in` (down_proj input). A run fetches only the outputs it asks for.
 */
export function blockGraph(c: LlamaConfig): Uint8Array {
  const g = new GraphBuilder();
  const h = g.input('hidden', ['B', 'L', c.nEmbd]);
  const pos = positionInputs(g, c);
  const inNorm = g.input('in_norm', [c.nEmbd]);
  const postNorm = g.input('post_norm', [c.nEmbd]);
  const aw = attnInputs(g, c);
  const mw = mlpInputs(g, c);
  const xa = rmsNorm(g, h, inNorm, c.eps);
  const a = attention(g, c, xa, aw, pos.cos, pos.sin, pos.mask);
  const h2 = g.op('Add', [h, a.out]);
  const xm = rmsNorm(g, h2, postNorm, c.eps);
  const m = mlp(g, xm, mw);
  g.output('out', g.op('Add', [h2, m.out]), ['B', 'L', c.nEmbd]);
  g.output('attn_in', xa, ['B', 'L', c.nEmbd]);
  g.output('o_in', a.ctx, ['B', 'L', c.nHead * c.headDim]);
  g.output('mlp_in', xm, ['B', 'L', c.nEmbd]);
  g.output('down_in', m.act, ['B', 'L', c.nFf]);
  return encodeModel(g.model('llama_block'));
}

/** Self-attention alone, on normalized input `x` [B, L, H] (AWQ's q/k/v loss module). */
export function attentionGraph(c: LlamaConfig): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', ['B', 'L', c.nEmbd]);
  const pos = positionInputs(g, c);
  const a = attention(g, c, x, attnInputs(g, c), pos.cos, pos.sin, pos.mask);
  g.output('out', a.out, ['B', 'L', c.nEmbd]);
  return encodeModel(g.model('llama_attention'));
}

/** The MLP alone, on normalized input `x` [B, L, H] (AWQ's gate/up loss module). */
export function mlpGraph(c: LlamaConfig): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', ['B', 'L', c.nEmbd]);
  g.output('out', mlp(g, x, mlpInputs(g, c)).out, ['B', 'L', c.nEmbd]);
  return encodeModel(g.model('llama_mlp'));
}

/** y [N, out] = x [N, in] @ w^T (+ b): AWQ's loss module for v -> o and up -> down. */
export function linearGraph(bias: boolean): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', ['N', 'I']);
  const w = g.input('w', ['O', 'I']);
  const b = bias ? g.input('b', ['O']) : undefined;
  g.output('out', linear(g, x, w, b), ['N', 'O']);
  return encodeModel(g.model('linear'));
}

/** Final RMSNorm and lm_head: logits [B, L, V]. */
export function headGraph(c: LlamaConfig): Uint8Array {
  const g = new GraphBuilder();
  const h = g.input('hidden', ['B', 'L', c.nEmbd]);
  const w = g.input('norm', [c.nEmbd]);
  const head = g.input('lm_head', [c.vocabSize, c.nEmbd]);
  g.output('logits', linear(g, rmsNorm(g, h, w, c.eps), head), ['B', 'L', c.vocabSize]);
  return encodeModel(g.model('llama_head'));
}

/**
 * The clip search's products per quantization group: x [G, T, gs] (tokens' input slices per group),
 * w [G, gs, O] (each output channel's group slice) -> out [G, T, O]; with `ref` given, the output is the
 * mean over tokens of the squared difference instead: err [G, O].
 */
export function groupProductGraph(withRef: boolean): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', ['G', 'T', 'S']);
  const w = g.input('w', ['G', 'S', 'O']);
  const y = g.op('MatMul', [x, w]);
  if (!withRef) {
    g.output('out', y, ['G', 'T', 'O']);
  } else {
    const ref = g.input('ref', ['G', 'T', 'O']);
    const d = g.op('Sub', [y, ref]);
    g.output('err', g.op('ReduceMean', [g.op('Mul', [d, d])], [intsAttr('axes', [1]), intAttr('keepdims', 0)]), ['G', 'O']);
  }
  return encodeModel(g.model(withRef ? 'group_err' : 'group_product'));
}

/** cos and sin [L, head_dim] for positions 0..L-1, as transformers computes them (float32 inv_freq). */
export function ropeTables(c: LlamaConfig, length: number): { cos: Float32Array; sin: Float32Array } {
  const hd = c.headDim;
  const half = hd / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = 1 / Math.fround(c.ropeTheta ** Math.fround((2 * i) / hd));
  const cos = new Float32Array(length * hd);
  const sin = new Float32Array(length * hd);
  for (let p = 0; p < length; p++) {
    const pos = Math.fround(p / c.ropeScale);
    for (let i = 0; i < half; i++) {
      const f = Math.fround(pos * invFreq[i]!);
      const cv = Math.cos(f);
      const sv = Math.sin(f);
      cos[p * hd + i] = cv;
      cos[p * hd + half + i] = cv;
      sin[p * hd + i] = sv;
      sin[p * hd + half + i] = sv;
    }
  }
  return { cos, sin };
}

/** The causal mask [L, L]: 0 on and below the diagonal, -inf above. */
export function causalMask(length: number): Float32Array {
  const m = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) m[i * length + j] = -Infinity;
  return m;
}
