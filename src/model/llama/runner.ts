// Runs the graphs of graph.ts in onnxruntime-node. Sequences of one length go through together
// ([B, L, H] hidden states), split into sub-batches so attention scores stay within a memory budget.
// The forward pass goes block by block: a caller holding one layer's weights and one set of hidden
// states at a time can run a model of any depth (AWQ calibrates a block, then feeds the next).
import * as ort from 'onnxruntime-node';
import { BakeError } from '../../util/errors.js';
import type { LlamaConfig } from './config.js';
import { attentionGraph, blockGraph, causalMask, groupProductGraph, headGraph, linearGraph, mlpGraph, ropeTables } from './graph.js';
import type { LayerWeights, Linear, LinearName, LlamaWeights } from './weights.js';

export type BlockOutput = 'out' | 'attn_in' | 'o_in' | 'mlp_in' | 'down_in';

type GraphKind = 'block' | 'attention' | 'mlp' | 'linear' | 'linear_bias' | 'head' | 'group' | 'group_err';

export interface RunnerOptions {
  /** onnxruntime intra-op threads (default: onnxruntime's choice, all cores). */
  threads?: number;
  /** Bytes of attention scores one run may hold (default 256 MiB): bounds the sub-batch. */
  scoreBudget?: number;
}

const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);

export class LlamaRunner {
  private readonly sessions = new Map<GraphKind, Promise<ort.InferenceSession>>();
  private readonly positions = new Map<number, { cos: ort.Tensor; sin: ort.Tensor; mask: ort.Tensor }>();
  /** Multiply-adds of the matrix products run so far (for GFLOP/s figures). */
  macs = 0;

  constructor(readonly config: LlamaConfig, private readonly opts: RunnerOptions = {}) {}

  private session(kind: GraphKind): Promise<ort.InferenceSession> {
    let s = this.sessions.get(kind);
    if (!s) {
      const c = this.config;
      const bytes = kind === 'block' ? blockGraph(c) : kind === 'attention' ? attentionGraph(c) : kind === 'mlp' ? mlpGraph(c)
        : kind === 'linear' ? linearGraph(false) : kind === 'linear_bias' ? linearGraph(true) : kind === 'head' ? headGraph(c)
          : groupProductGraph(kind === 'group_err');
      s = ort.InferenceSession.create(bytes, {
        intraOpNumThreads: this.opts.threads ?? 0, interOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3,
      }).catch((err: unknown) => {
        throw new BakeError(`onnxruntime refused bake's ${kind} graph for ${c.hfArchitecture}: ${(err as Error).message}`, 'failure', { cause: err });
      });
      this.sessions.set(kind, s);
    }
    return s;
  }

  private pos(length: number): { cos: ort.Tensor; sin: ort.Tensor; mask: ort.Tensor } {
    let p = this.positions.get(length);
    if (!p) {
      const { cos, sin } = ropeTables(this.config, length);
      const hd = this.config.headDim;
      p = { cos: f32(cos, [length, hd]), sin: f32(sin, [length, hd]), mask: f32(causalMask(length), [length, length]) };
      this.positions.set(length, p);
    }
    return p;
  }

  /** Sequences per run so that B * heads * L * L scores fit the budget. */
  private subBatch(length: number): number {
    const perSeq = this.config.nHead * length * length * 4 * 3; // scores, probabilities, a temporary
    return Math.max(1, Math.floor((this.opts.scoreBudget ?? 256 * 2 ** 20) / perSeq));
  }

  private attnFeeds(lin: Record<LinearName, Linear>): Record<string, ort.Tensor> {
    const c = this.config;
    const w = (l: Linear) => f32(l.weight, [l.out, l.in]);
    const b = (l: Linear) => f32(l.bias!, [l.out]);
    const q = lin['self_attn.q_proj'], k = lin['self_attn.k_proj'], v = lin['self_attn.v_proj'], o = lin['self_attn.o_proj'];
    return {
      wq: w(q), wk: w(k), wv: w(v), wo: w(o),
      ...(c.qkvBias ? { bq: b(q), bk: b(k), bv: b(v) } : {}),
      ...(c.oBias ? { bo: b(o) } : {}),
    };
  }

  private mlpFeeds(lin: Record<LinearName, Linear>): Record<string, ort.Tensor> {
    const w = (l: Linear) => f32(l.weight, [l.out, l.in]);
    const b = (l: Linear) => f32(l.bias!, [l.out]);
    const g = lin['mlp.gate_proj'], u = lin['mlp.up_proj'], d = lin['mlp.down_proj'];
    return { wg: w(g), wu: w(u), wd: w(d), ...(this.config.mlpBias ? { bg: b(g), bu: b(u), bd: b(d) } : {}) };
  }

  private attnMacs(tokens: number, length: number): number {
    const c = this.config;
    const q = c.nHead * c.headDim, kv = c.nHeadKv * c.headDim;
    return tokens * (2 * c.nEmbd * q + 2 * c.nEmbd * kv) + tokens * length * q; // projections + QK^T and PV (causal half of 2x)
  }

  private mlpMacs(tokens: number): number {
    return tokens * 3 * this.config.nEmbd * this.config.nFf;
  }

  /**
   * Runs `kind` over `batch` sequences of `length` positions held in `x` ([batch, length, width]),
   * in sub-batches, gathering the named outputs into whole arrays.
   */
  private async runBatched<K extends string>(
    kind: GraphKind, input: string, x: Float32Array, width: number, batch: number, length: number,
    feeds: Record<string, ort.Tensor>, fetch: readonly K[], widths: Record<K, number>,
  ): Promise<Record<K, Float32Array>> {
    const s = await this.session(kind);
    const out = {} as Record<K, Float32Array>;
    for (const k of fetch) out[k] = new Float32Array(batch * length * widths[k]);
    const step = this.subBatch(length);
    const p = this.pos(length);
    for (let b0 = 0; b0 < batch; b0 += step) {
      const n = Math.min(step, batch - b0);
      const slice = x.subarray(b0 * length * width, (b0 + n) * length * width);
      const r = await s.run({ ...feeds, [input]: f32(slice, [n, length, width]), cos: p.cos, sin: p.sin, mask: p.mask }, fetch as unknown as string[]);
      for (const k of fetch) out[k].set(r[k]!.data as Float32Array, b0 * length * widths[k]);
    }
    return out;
  }

  /** One decoder block over hidden states [batch, length, H]: the outputs asked for. */
  async block<K extends BlockOutput>(layer: LayerWeights, hidden: Float32Array, batch: number, length: number, fetch: readonly K[]): Promise<Record<K, Float32Array>> {
    const c = this.config;
    const widths: Record<BlockOutput, number> = { out: c.nEmbd, attn_in: c.nEmbd, o_in: c.nHead * c.headDim, mlp_in: c.nEmbd, down_in: c.nFf };
    const feeds = { in_norm: f32(layer.inputNorm, [c.nEmbd]), post_norm: f32(layer.postNorm, [c.nEmbd]), ...this.attnFeeds(layer.linears), ...this.mlpFeeds(layer.linears) };
    this.macs += this.attnMacs(batch * length, length) + this.mlpMacs(batch * length);
    return this.runBatched('block', 'hidden', hidden, c.nEmbd, batch, length, feeds, fetch, widths as Record<K, number>);
  }

  /** Self-attention (with o_proj) on normalized input [batch, length, H]. */
  async attention(linears: Record<LinearName, Linear>, x: Float32Array, batch: number, length: number): Promise<Float32Array> {
    this.macs += this.attnMacs(batch * length, length);
    return (await this.runBatched('attention', 'x', x, this.config.nEmbd, batch, length, this.attnFeeds(linears), ['out'], { out: this.config.nEmbd })).out;
  }

  /** The MLP on normalized input [batch, length, H]. */
  async mlp(linears: Record<LinearName, Linear>, x: Float32Array, batch: number, length: number): Promise<Float32Array> {
    this.macs += this.mlpMacs(batch * length);
    return (await this.runBatched('mlp', 'x', x, this.config.nEmbd, batch, length, this.mlpFeeds(linears), ['out'], { out: this.config.nEmbd })).out;
  }

  /** x [rows, in] @ W^T (+ b). */
  async linear(l: Linear, x: Float32Array, rows: number): Promise<Float32Array> {
    const s = await this.session(l.bias ? 'linear_bias' : 'linear');
    this.macs += rows * l.in * l.out;
    const r = await s.run({ x: f32(x, [rows, l.in]), w: f32(l.weight, [l.out, l.in]), ...(l.bias ? { b: f32(l.bias, [l.out]) } : {}) });
    return r.out!.data as Float32Array;
  }

  /** Logits [batch, length, vocab] of final hidden states. */
  async logits(norm: Float32Array, lmHead: Float32Array, hidden: Float32Array, batch: number, length: number): Promise<Float32Array> {
    const c = this.config;
    const s = await this.session('head');
    this.macs += batch * length * c.nEmbd * c.vocabSize;
    const r = await s.run({ hidden: f32(hidden, [batch, length, c.nEmbd]), norm: f32(norm, [c.nEmbd]), lm_head: f32(lmHead, [c.vocabSize, c.nEmbd]) });
    return r.logits!.data as Float32Array;
  }

  /** Per-group products x [G, T, S] @ w [G, S, O]; with `ref`, their mean squared error over T instead ([G, O]). */
  async groupProducts(x: Float32Array, w: Float32Array, groups: number, tokens: number, size: number, outs: number, ref?: Float32Array): Promise<Float32Array> {
    const s = await this.session(ref ? 'group_err' : 'group');
    this.macs += groups * tokens * size * outs;
    const feeds: Record<string, ort.Tensor> = { x: f32(x, [groups, tokens, size]), w: f32(w, [groups, size, outs]) };
    if (ref) feeds.ref = f32(ref, [groups, tokens, outs]);
    const r = await s.run(feeds);
    return (ref ? r.err : r.out)!.data as Float32Array;
  }

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s.catch(() => undefined))?.release();
  }
}

/** Embedding rows for token ids: [sequences, length, H]. */
export function embedTokens(embed: Float32Array, config: LlamaConfig, tokens: readonly (readonly number[])[]): Float32Array {
  const h = config.nEmbd;
  const length = tokens[0]?.length ?? 0;
  const out = new Float32Array(tokens.length * length * h);
  tokens.forEach((seq, b) => {
    if (seq.length !== length) throw new RangeError(`sequences must share one length: ${seq.length} != ${length}`);
    seq.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) throw new RangeError(`token id ${t} outside the vocabulary of ${config.vocabSize}`);
      out.set(embed.subarray(t * h, (t + 1) * h), (b * length + i) * h);
    });
  });
  return out;
}

/**
 * The final hidden states of sequences of one length, block by block (one layer's weights loaded at a
 * time). `onLayer` sees each layer's output (progress, or a caller that keeps intermediates).
 */
export async function forwardHidden(runner: LlamaRunner, weights: LlamaWeights, tokens: readonly (readonly number[])[], onLayer?: (i: number) => void): Promise<Float32Array> {
  const c = weights.config;
  const length = tokens[0]?.length ?? 0;
  if (c.slidingWindow !== undefined && length > c.slidingWindow) {
    throw new RangeError(`sequences of ${length} tokens exceed the model's sliding window of ${c.slidingWindow}`);
  }
  let hidden = embedTokens(await weights.embed(), c, tokens);
  for (let i = 0; i < c.nLayer; i++) {
    hidden = (await runner.block(await weights.layer(i), hidden, tokens.length, length, ['out'])).out;
    onLayer?.(i);
  }
  return hidden;
}

/** Logits [sequences, length, vocab] of a whole model (small models and tests; large ones go sequence by sequence). */
export async function forwardLogits(runner: LlamaRunner, weights: LlamaWeights, tokens: readonly (readonly number[])[]): Promise<Float32Array> {
  const hidden = await forwardHidden(runner, weights, tokens);
  return runner.logits(await weights.finalNorm(), await weights.lmHead(), hidden, tokens.length, tokens[0]?.length ?? 0);
}
