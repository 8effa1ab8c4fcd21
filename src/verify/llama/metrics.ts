// Perplexity and KL-divergence statistics computed the way llama-perplexity does (tools/perplexity):
// the base model's next-token log-probabilities are kept compressed to 16 bits per vocabulary entry over
// a 16-nat window (what --kl-divergence-base stores), and the quantized model's logits are compared with
// them. Reproducing that compression, rather than using exact base log-probs, keeps our figures within
// noise of the numbers llama.cpp users already know for the same files.

const fr = Math.fround;

/** One base position: compressed log-probs plus the exact NLL of the observed next token. */
export interface BaseLogProbs {
  /** log p_i = scale * q[i] + minLogProb (float32 arithmetic, as llama.cpp). */
  scale: number;
  minLogProb: number;
  q: Uint16Array;
}

/** max logit and log-sum-exp of a logit row, in llama.cpp's mixed float/double arithmetic. */
function logSumExp(logits: Float32Array): { max: number; imax: number; lse: number } {
  let max = logits[0]!;
  let imax = 0;
  for (let i = 1; i < logits.length; i++) {
    if (logits[i]! > max) {
      max = logits[i]!;
      imax = i;
    }
  }
  let sum = 0; // double, like llama.cpp's sum_exp
  for (let i = 0; i < logits.length; i++) sum += fr(Math.exp(fr(logits[i]! - max)));
  return { max, imax, lse: fr(Math.log(sum)) };
}

/** NLL of `token` under `logits` (the quantity llama-perplexity averages into PPL). */
export function tokenNll(logits: Float32Array, token: number): number {
  const { max, lse } = logSumExp(logits);
  return fr(fr(max + lse) - logits[token]!);
}

/** Compresses a base logit row to 16 bits per entry (llama-perplexity's base log-prob file format). */
export function compressBase(logits: Float32Array): BaseLogProbs {
  let max = logits[0]!;
  let min = logits[0]!;
  for (let i = 1; i < logits.length; i++) {
    max = Math.max(max, logits[i]!);
    min = Math.min(min, logits[i]!);
  }
  min = Math.max(min, fr(max - 16));
  const { lse } = logSumExp(logits);
  const minLogProb = fr(fr(min - max) - lse);
  const scale = fr(fr(max - min) / 65535);
  const q = new Uint16Array(logits.length);
  if (scale !== 0) {
    const inv = fr(1 / scale);
    for (let i = 0; i < logits.length; i++) {
      // Round half to even, like ggml's nearest_int; the window makes values fit 0..65535.
      q[i] = logits[i]! > min ? roundHalfEven(fr(inv * fr(logits[i]! - min))) : 0;
    }
  }
  return { scale, minLogProb, q };
}

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Running sums over scored positions, as llama-perplexity's kl_divergence_result. */
export class KlAccumulator {
  count = 0;
  private sumNll = 0;
  private sumNll2 = 0;
  private sumNllBase = 0;
  private sumKld = 0;
  private sumKld2 = 0;
  private sumPDiff2 = 0;
  private sameTop = 0;
  private readonly klds: number[] = [];

  /** Adds one position: the quantized model's logits, the base's compressed log-probs, the observed token. */
  add(logits: Float32Array, base: BaseLogProbs, token: number): void {
    if (logits.length !== base.q.length) throw new RangeError(`vocabulary sizes differ: ${logits.length} vs ${base.q.length}`);
    const { max, imax, lse } = logSumExp(logits);
    const nll = fr(fr(max + lse) - logits[token]!);
    const nllBase = -fr(fr(base.scale * base.q[token]!) + base.minLogProb);
    this.sumNll += nll;
    this.sumNll2 += nll * nll;
    this.sumNllBase += nllBase;
    const norm = fr(max + lse);
    let kld = 0;
    let imaxBase = -1;
    let pMax = 0;
    for (let i = 0; i < logits.length; i++) {
      const pLogBase = fr(fr(base.scale * base.q[i]!) + base.minLogProb);
      if (i === 0 || pLogBase > pMax) {
        pMax = pLogBase;
        imaxBase = i;
      }
      // Terms below e^-16 are dropped, as llama.cpp does.
      if (pLogBase > -16) kld += fr(fr(Math.exp(pLogBase)) * fr(fr(pLogBase - logits[i]!) + norm));
    }
    this.sumKld += kld;
    this.sumKld2 += kld * kld;
    this.klds.push(kld);
    if (imax === imaxBase) this.sameTop++;
    const pDiff = fr(Math.exp(-nll)) - fr(Math.exp(-nllBase));
    this.sumPDiff2 += pDiff * pDiff;
    this.count++;
  }

  /** Final statistics; `kld_*` in nats, `same_top_pct` and `delta_p_rms_pct` in percent. */
  result(): Record<string, number> {
    const n = this.count;
    const sorted = Float64Array.from(this.klds).sort();
    const pct = (f: number): number => {
      const p = f * (sorted.length - 1);
      const ip = Math.floor(p);
      return (1 - (p - ip)) * sorted[ip]! + (p - ip) * sorted[Math.min(ip + 1, sorted.length - 1)]!;
    };
    const kldMean = this.sumKld / n;
    return {
      ppl: Math.exp(this.sumNll / n),
      ppl_base_compressed: Math.exp(this.sumNllBase / n),
      kld_mean: kldMean,
      kld_stderr: n > 10 ? Math.sqrt(Math.max(0, this.sumKld2 / n - kldMean * kldMean) / (n - 1)) : 0,
      kld_median: pct(0.5),
      kld_p99: pct(0.99),
      kld_max: sorted[sorted.length - 1]!,
      same_top_pct: (100 * this.sameTop) / n,
      delta_p_rms_pct: 100 * Math.sqrt(this.sumPDiff2 / n),
      scored_tokens: n,
    };
  }

  /** The per-token KLD distribution over fixed bins (KLD_BIN_EDGES): small, and the same bins for every model. */
  histogram(): KldHistogram {
    const counts = new Array<number>(KLD_BIN_EDGES.length).fill(0);
    for (const v of this.klds) {
      // Rounding can make a KLD a hair below 0: it counts in the first bin.
      let i = KLD_BIN_EDGES.length - 1;
      while (i > 0 && v < KLD_BIN_EDGES[i]!) i--;
      counts[i]!++;
    }
    return { edges: [...KLD_BIN_EDGES], counts };
  }
}

/**
 * Per-token KLD counts: counts[i] tokens have edges[i] <= KLD < edges[i + 1] (nats); the last bin holds
 * everything from the last edge up. Kept in the verify report so the build report can draw it.
 */
export interface KldHistogram {
  edges: number[];
  counts: number[];
}

/** 0, then four bins a decade from 1e-6 to 10 nats (log-spaced, rounded to 3 significant digits). */
export const KLD_BIN_EDGES: readonly number[] = [0, ...Array.from({ length: 29 }, (_, i) => Number((10 ** (-6 + i / 4)).toPrecision(3)))];
