// The AWQ search for one decoder block (AutoAWQ awq/quantize/quantizer.py, auto_scale.py, auto_clip.py;
// llm-compressor modifiers/awq), written for bake's forward pass:
//
// 1. Run the block on its calibration input and keep what each linear reads.
// 2. Scale groups: input_layernorm -> q,k,v (loss on the attention output); v -> o when v's outputs are
//    o's inputs one to one (no grouped-query attention); post_attention_layernorm -> gate,up (loss on the
//    MLP output); up -> down. For each, x = per-input-channel mean |activation|, w = per-input-channel
//    mean of |W| / its group's max |W|; for alpha = i/20: s = x^alpha / (w^(1-alpha) + 1e-4) (duo
//    scaling) or x^alpha, clamped >= 1e-4, divided by sqrt(max s * min s); the loss is the MSE of the
//    module's output with Q(W * s) / s against the original. All groups are searched on the original
//    block, then applied together: the preceding norm (or linear's output rows and bias) divided by s,
//    the linears' input columns multiplied by s, the cached inputs divided by s.
// 3. Clip search (not q/k: their errors pass through the QK^T product): per output channel and group,
//    max |w| shrunk by (1 - i/20), i < 10, keeping the one whose group output (over up to 512 sampled
//    tokens) is closest to the unclipped weights'.
// 4. Quantize; the block as it ships (quantized linears dequantized, everything else rounded to fp16)
//    gives the next block's input (`propagate: quantized`), or the original block does (`float`, AutoAWQ).
import type { LlamaRunner } from '../../model/llama/runner.js';
import { cloneLayer, LINEARS, type LayerWeights, type Linear, type LinearName } from '../../model/llama/weights.js';
import { dequantize, fakeQuantize, quantizeGroups, roundToFp16, type QuantizedLinear } from './kernel.js';

export interface SearchOptions {
  groupSize: number;
  /** true: x^a / w^(1-a); false: x^a; both: the two grids (the second includes s = 1, i.e. no scaling). */
  duoScaling: boolean | 'both';
  clip: boolean;
  propagate: 'quantized' | 'float';
  /** Grid points for alpha (20) and the clip shrink (20 x 0.5 = 10 steps). */
  grid?: number;
  maxShrink?: number;
  /** Tokens the clip search samples (AutoAWQ's n_sample_token). */
  clipTokens?: number;
}

type Capture = 'attn_in' | 'o_in' | 'mlp_in' | 'down_in';

interface ScaleGroup {
  name: string;
  prev: 'input_layernorm' | 'post_attention_layernorm' | 'self_attn.v_proj' | 'mlp.up_proj';
  linears: LinearName[];
  input: Capture;
  module: 'attention' | 'mlp' | LinearName;
}

const SCALE_GROUPS: readonly ScaleGroup[] = [
  { name: 'input_layernorm -> q,k,v', prev: 'input_layernorm', linears: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'], input: 'attn_in', module: 'attention' },
  { name: 'v_proj -> o_proj', prev: 'self_attn.v_proj', linears: ['self_attn.o_proj'], input: 'o_in', module: 'self_attn.o_proj' },
  { name: 'post_attention_layernorm -> gate,up', prev: 'post_attention_layernorm', linears: ['mlp.gate_proj', 'mlp.up_proj'], input: 'mlp_in', module: 'mlp' },
  { name: 'up_proj -> down_proj', prev: 'mlp.up_proj', linears: ['mlp.down_proj'], input: 'down_in', module: 'mlp.down_proj' },
];

const INPUT_OF: Record<LinearName, Capture> = {
  'self_attn.q_proj': 'attn_in', 'self_attn.k_proj': 'attn_in', 'self_attn.v_proj': 'attn_in', 'self_attn.o_proj': 'o_in',
  'mlp.gate_proj': 'mlp_in', 'mlp.up_proj': 'mlp_in', 'mlp.down_proj': 'down_in',
};

export interface ScaleChoice {
  group: string;
  /** Why no search ran (nothing in the group is quantized, or shapes do not allow it). */
  skipped?: string;
  alpha?: number;
  duo?: boolean;
  loss?: number;
  /** The loss with no scaling (round-to-nearest of the same weights), when the grid held s = 1. */
  lossNoScale?: number;
}

export interface BlockResult {
  /** The block as it ships: quantized linears dequantized, everything else as fp16 values. */
  shipped: LayerWeights;
  /** Codes of the quantized linears. */
  quantized: Partial<Record<LinearName, QuantizedLinear>>;
  scales: ScaleChoice[];
  /** Per clipped linear: share of (channel, group) pairs whose range was shrunk. */
  clipped: Partial<Record<LinearName, number>>;
  /** The next block's input. */
  next: Float32Array;
}

function meanAbsColumns(x: Float32Array, cols: number): Float64Array {
  const rows = x.length / cols;
  const m = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0, at = r * cols; c < cols; c++) m[c] += Math.abs(x[at + c]!);
  for (let c = 0; c < cols; c++) m[c] /= rows;
  return m;
}

/** Per input channel: mean over rows of |w| / (max |w| of its group + 1e-6). */
function weightMean(ws: Linear[], g: number): Float64Array {
  const inF = ws[0]!.in;
  const m = new Float64Array(inF);
  let rows = 0;
  for (const l of ws) {
    for (let r = 0; r < l.out; r++) {
      for (let at = r * inF; at < (r + 1) * inF; at += g) {
        let max = 0;
        for (let j = 0; j < g; j++) max = Math.max(max, Math.abs(l.weight[at + j]!));
        const d = max + 1e-6;
        for (let j = 0; j < g; j++) m[at - r * inF + j] += Math.abs(l.weight[at + j]!) / d;
      }
    }
    rows += l.out;
  }
  for (let c = 0; c < inF; c++) m[c] /= rows;
  return m;
}

function candidateScales(xMean: Float64Array, wMean: Float64Array, alpha: number, duo: boolean): Float32Array {
  const n = xMean.length;
  const s = new Float64Array(n);
  let max = -Infinity, min = Infinity;
  for (let c = 0; c < n; c++) {
    const v = duo ? xMean[c]! ** alpha / (wMean[c]! ** (1 - alpha) + 1e-4) : xMean[c]! ** alpha;
    s[c] = Math.max(v, 1e-4);
    max = Math.max(max, s[c]!);
    min = Math.min(min, s[c]!);
  }
  const norm = Math.sqrt(max * min);
  const out = new Float32Array(n);
  for (let c = 0; c < n; c++) {
    const v = s[c]! / norm;
    out[c] = Number.isFinite(v) ? v : 1;
  }
  return out;
}

/** Q(W * s) / s for an [out, in] linear and per-input-channel scales. */
function scaledQuant(l: Linear, s: Float32Array, g: number): Float32Array {
  const w = new Float32Array(l.weight.length);
  for (let r = 0; r < l.out; r++) for (let c = 0, at = r * l.in; c < l.in; c++) w[at + c] = l.weight[at + c]! * s[c]!;
  fakeQuantize(w, l.out, l.in, g, w);
  for (let r = 0; r < l.out; r++) for (let c = 0, at = r * l.in; c < l.in; c++) w[at + c] = w[at + c]! / s[c]!;
  return w;
}

function mse(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    sum += d * d;
  }
  return sum / a.length;
}

function scaleColumns(l: Linear, s: Float32Array, by: 'mul' | 'div'): void {
  for (let r = 0; r < l.out; r++) for (let c = 0, at = r * l.in; c < l.in; c++) l.weight[at + c] = by === 'mul' ? l.weight[at + c]! * s[c]! : l.weight[at + c]! / s[c]!;
}

function divideRows(l: Linear, s: Float32Array): void {
  for (let r = 0; r < l.out; r++) {
    const d = s[r]!;
    for (let c = 0, at = r * l.in; c < l.in; c++) l.weight[at + c] = l.weight[at + c]! / d;
    if (l.bias) l.bias[r] = l.bias[r]! / d;
  }
}

function divideInPlace(v: Float32Array, s: Float32Array): void {
  for (let i = 0; i < v.length; i++) v[i] = v[i]! / s[i]!;
}

export class AwqBlockSearch {
  constructor(private readonly runner: LlamaRunner, private readonly opts: SearchOptions) {}

  private async moduleOutput(group: ScaleGroup, linears: Record<LinearName, Linear>, x: Float32Array, batch: number, length: number): Promise<Float32Array> {
    if (group.module === 'attention') return this.runner.attention(linears, x, batch, length);
    if (group.module === 'mlp') return this.runner.mlp(linears, x, batch, length);
    return this.runner.linear(linears[group.module], x, batch * length);
  }

  private async searchScales(group: ScaleGroup, layer: LayerWeights, x: Float32Array, batch: number, length: number): Promise<{ choice: ScaleChoice; scales: Float32Array }> {
    const g = this.opts.groupSize;
    const ls = group.linears.map((n) => layer.linears[n]);
    const inF = ls[0]!.in;
    const xMean = meanAbsColumns(x, inF);
    const wMean = weightMean(ls, g);
    const fp = await this.moduleOutput(group, layer.linears, x, batch, length);
    const grid = this.opts.grid ?? 20;
    const modes = this.opts.duoScaling === 'both' ? [true, false] : [this.opts.duoScaling];
    let best: { loss: number; alpha: number; duo: boolean; s: Float32Array } | undefined;
    let lossNoScale: number | undefined;
    for (const duo of modes) {
      for (let i = 0; i < grid; i++) {
        const alpha = i / grid;
        const s = candidateScales(xMean, wMean, alpha, duo);
        const linears = { ...layer.linears };
        for (const n of group.linears) linears[n] = { ...layer.linears[n], weight: scaledQuant(layer.linears[n], s, g) };
        const loss = mse(await this.moduleOutput(group, linears, x, batch, length), fp);
        if (!duo && i === 0) lossNoScale = loss;
        if (Number.isFinite(loss) && (!best || loss < best.loss)) best = { loss, alpha, duo, s };
      }
    }
    if (!best) throw new RangeError(`AWQ found no finite loss for ${group.name}: the module output is NaN`);
    return { choice: { group: group.name, alpha: best.alpha, duo: best.duo, loss: best.loss, ...(lossNoScale !== undefined ? { lossNoScale } : {}) }, scales: best.s };
  }

  /** The clip search for one linear (weights and input already scaled); clamps the weights in place. */
  private async clip(l: Linear, x: Float32Array): Promise<number> {
    const g = this.opts.groupSize;
    const nG = l.in / g;
    const total = x.length / l.in;
    const step = Math.max(1, Math.floor(total / (this.opts.clipTokens ?? 512)));
    const T = Math.ceil(total / step);
    const xg = new Float32Array(nG * T * g);
    for (let t = 0; t < T; t++) for (let gi = 0; gi < nG; gi++) xg.set(x.subarray(t * step * l.in + gi * g, t * step * l.in + (gi + 1) * g), (gi * T + t) * g);
    const grid = this.opts.grid ?? 20;
    const steps = Math.floor((this.opts.maxShrink ?? 0.5) * grid);
    // Output channels in chunks so the per-group products stay within ~64 MiB.
    const chunk = Math.max(8, Math.min(l.out, Math.floor((64 * 2 ** 20) / (4 * nG * T))));
    let shrunk = 0;
    for (let o0 = 0; o0 < l.out; o0 += chunk) {
      const oc = Math.min(chunk, l.out - o0);
      const rows = l.weight.subarray(o0 * l.in, (o0 + oc) * l.in);
      const arrange = (w: Float32Array): Float32Array => {
        const out = new Float32Array(nG * g * oc);
        for (let o = 0; o < oc; o++) for (let gi = 0; gi < nG; gi++) for (let j = 0; j < g; j++) out[(gi * g + j) * oc + o] = w[o * l.in + gi * g + j]!;
        return out;
      };
      const ref = await this.runner.groupProducts(xg, arrange(rows), nG, T, g, oc);
      const orgMax = new Float32Array(oc * nG);
      for (let o = 0; o < oc; o++) for (let gi = 0; gi < nG; gi++) {
        let m = 0;
        for (let j = 0; j < g; j++) m = Math.max(m, Math.abs(rows[o * l.in + gi * g + j]!));
        orgMax[o * nG + gi] = m;
      }
      const best = orgMax.slice();
      const minErr = new Float64Array(oc * nG).fill(Infinity);
      const cand = new Float32Array(rows.length);
      for (let i = 0; i < steps; i++) {
        const f = 1 - i / grid;
        for (let o = 0; o < oc; o++) for (let gi = 0; gi < nG; gi++) {
          const m = orgMax[o * nG + gi]! * f;
          for (let j = 0, at = o * l.in + gi * g; j < g; j++) cand[at + j] = Math.min(m, Math.max(-m, rows[at + j]!));
        }
        fakeQuantize(cand, oc, l.in, g, cand);
        const err = await this.runner.groupProducts(xg, arrange(cand), nG, T, g, oc, ref);
        for (let o = 0; o < oc; o++) for (let gi = 0; gi < nG; gi++) {
          const e = err[gi * oc + o]!;
          if (e < minErr[o * nG + gi]!) {
            minErr[o * nG + gi] = e;
            best[o * nG + gi] = orgMax[o * nG + gi]! * f;
          }
        }
      }
      for (let o = 0; o < oc; o++) for (let gi = 0; gi < nG; gi++) {
        const m = best[o * nG + gi]!;
        if (m < orgMax[o * nG + gi]!) shrunk++;
        for (let j = 0, at = o * l.in + gi * g; j < g; j++) rows[at + j] = Math.min(m, Math.max(-m, rows[at + j]!));
      }
    }
    return shrunk / (l.out * nG);
  }

  /**
   * AWQ for one block: `original` is not modified; `hidden` [batch, length, H] is the block's input.
   * `quantize(name)` says which linears the plan quantizes (the rest ship in fp16).
   */
  async run(original: LayerWeights, hidden: Float32Array, batch: number, length: number, quantize: (n: LinearName) => boolean, canScaleVO: boolean): Promise<BlockResult> {
    const g = this.opts.groupSize;
    const fetch = ['attn_in', 'o_in', 'mlp_in', 'down_in', ...(this.opts.propagate === 'float' ? ['out' as const] : [])] as const;
    const caps = await this.runner.block(original, hidden, batch, length, fetch);
    const scales: ScaleChoice[] = [];
    const found: { group: ScaleGroup; s: Float32Array }[] = [];
    for (const group of SCALE_GROUPS) {
      if (!group.linears.some(quantize)) {
        scales.push({ group: group.name, skipped: 'its linears stay fp16' });
        continue;
      }
      if (group.prev === 'self_attn.v_proj' && !canScaleVO) {
        scales.push({ group: group.name, skipped: 'grouped-query attention: v_proj has fewer outputs than o_proj has inputs' });
        continue;
      }
      const { choice, scales: s } = await this.searchScales(group, original, caps[group.input], batch, length);
      scales.push(choice);
      found.push({ group, s });
    }
    // Apply every scale found on the original block, as AutoAWQ's apply_scale does.
    const layer = cloneLayer(original);
    for (const { group, s } of found) {
      if (group.prev === 'input_layernorm') divideInPlace(layer.inputNorm, s);
      else if (group.prev === 'post_attention_layernorm') divideInPlace(layer.postNorm, s);
      else divideRows(layer.linears[group.prev], s);
      for (const n of group.linears) scaleColumns(layer.linears[n], s, 'mul');
      const x = caps[group.input];
      for (let at = 0; at < x.length; at += s.length) for (let c = 0; c < s.length; c++) x[at + c] = x[at + c]! / s[c]!;
    }
    const clipped: Partial<Record<LinearName, number>> = {};
    if (this.opts.clip) {
      for (const n of LINEARS) {
        if (!quantize(n) || n === 'self_attn.q_proj' || n === 'self_attn.k_proj') continue;
        clipped[n] = await this.clip(layer.linears[n], caps[INPUT_OF[n]]);
      }
    }
    const quantized: Partial<Record<LinearName, QuantizedLinear>> = {};
    const shipped: LayerWeights = { inputNorm: roundToFp16(layer.inputNorm), postNorm: roundToFp16(layer.postNorm), linears: { ...layer.linears } };
    for (const n of LINEARS) {
      const l = layer.linears[n];
      const bias = l.bias ? roundToFp16(l.bias) : undefined;
      if (quantize(n)) {
        const ql = quantizeGroups(l.weight, l.out, l.in, g);
        quantized[n] = ql;
        shipped.linears[n] = { ...l, weight: dequantize(ql), ...(bias ? { bias } : {}) };
      } else {
        shipped.linears[n] = { ...l, weight: roundToFp16(l.weight), ...(bias ? { bias } : {}) };
      }
    }
    const next = this.opts.propagate === 'float'
      ? (caps as unknown as Record<'out', Float32Array>).out
      : (await this.runner.block(shipped, hidden, batch, length, ['out'])).out;
    return { shipped, quantized, scales, clipped, next };
  }
}
