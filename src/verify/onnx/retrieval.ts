// Verification of retrieval models as they are used, not as raw tensors: an embedder's pooled sentence
// vectors (its recipe's pooling, normalization and prefixes) and a reranker's ranking of passages per
// query. Both run through src/model/onnx's TextModel, the code the serving runtime runs.
import { performance } from 'node:perf_hooks';
import type { EmbeddingSpec, RerankSpec, VerifySpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { DEFAULT_EVAL_TEXTS, TextModel } from '../../model/onnx/index.js';
import { argmax, cosine, maxAbsError, percentile, spearman } from './metrics.js';

/** One eval sample: a query with candidate passages (JSON line), or a lone text (plain line). */
export type EvalSample = { query: string; passages: string[] } | { text: string };

/**
 * verify.eval lines: `{"query": ..., "passages": [...]}` (JSON Lines) or plain text, one sample a line.
 * Malformed JSON lines are bad input naming the line.
 */
export function parseEvalSamples(lines: string[], field = 'verify.eval'): EvalSample[] {
  return lines.map((line, i) => {
    if (!line.trimStart().startsWith('{')) return { text: line };
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      throw new InputError(`${field} line ${i + 1} is not valid JSON: ${(err as Error).message}`, { field, expected: '{"query": "...", "passages": ["...", ...]} per line', cause: err });
    }
    const o = v as { query?: unknown; passages?: unknown };
    if (typeof o.query !== 'string' || !Array.isArray(o.passages) || o.passages.length === 0 || !o.passages.every((p) => typeof p === 'string')) {
      throw new InputError(`${field} line ${i + 1}: expected {"query": string, "passages": [string, ...]}`, { field, expected: '{"query": "...", "passages": ["...", ...]} per line' });
    }
    return { query: o.query, passages: o.passages as string[] };
  });
}

interface Pair { reference: TextModel; quantized: TextModel }

async function timed<T>(runs: number, f: () => Promise<T>): Promise<number> {
  await f();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    times.push(performance.now() - t0);
  }
  return percentile(times, 0.5);
}

function mean(v: number[]): number {
  return v.length ? v.reduce((s, x) => s + x, 0) / v.length : Number.NaN;
}

/** Texts as an embedder sees them: each query and passage with its prefix; lone texts with every prefix (or none). */
function prefixed(samples: EvalSample[], spec: EmbeddingSpec): { groups: { query: string; passages: string[] }[]; texts: string[] } {
  const p = spec.prefixes;
  const q = p.query ?? (spec.default_prefix ? p[spec.default_prefix] : undefined) ?? '';
  const d = p.passage ?? p.document ?? q;
  const groups: { query: string; passages: string[] }[] = [];
  const texts: string[] = [];
  for (const s of samples) {
    if ('query' in s) {
      const g = { query: q + s.query, passages: s.passages.map((x) => d + x) };
      groups.push(g);
      texts.push(g.query, ...g.passages);
    } else {
      const names = Object.values(p);
      texts.push(...(names.length ? names.map((pre) => pre + s.text) : [s.text]));
    }
  }
  return { groups, texts };
}

/**
 * An embedder's agreement: cosine of reference and quantized pooled embeddings per text (the texts with
 * their prefixes), and per query the ranking of its passages by similarity (Spearman, top-1).
 */
export async function compareEmbeddings(models: Pair, samples: EvalSample[], spec: EmbeddingSpec, runs: number): Promise<{ metrics: Record<string, number>; details: Record<string, unknown> }> {
  const { groups, texts } = prefixed(samples.length ? samples : DEFAULT_EVAL_TEXTS.map((text) => ({ text })), spec);
  const embedAll = async (m: TextModel) => {
    const out: Float32Array[] = [];
    for (let i = 0; i < texts.length; i += 8) out.push(...(await m.embed(texts.slice(i, i + 8), spec)).values);
    return out;
  };
  const [a, b] = [await embedAll(models.reference), await embedAll(models.quantized)];
  const cosines = a.map((x, i) => cosine(x, b[i]!));
  let maxAbs = 0, absSum = 0, count = 0;
  a.forEach((x, i) => {
    maxAbs = Math.max(maxAbs, maxAbsError(x, b[i]!));
    for (let k = 0; k < x.length; k++) absSum += Math.abs(x[k]! - b[i]![k]!);
    count += x.length;
  });
  const index = new Map(texts.map((t, i) => [t, i]));
  const spearmans: number[] = [], top1: number[] = [];
  for (const g of groups) {
    const sims = (e: Float32Array[]) => g.passages.map((p) => cosine(e[index.get(g.query)!]!, e[index.get(p)!]!));
    const [sa, sb] = [sims(a), sims(b)];
    if (sa.length > 1) spearmans.push(spearman(sa, sb));
    top1.push(argmax(sa) === argmax(sb) ? 1 : 0);
  }
  const batch = texts.slice(0, 8);
  const [la, lb] = [await timed(runs, () => models.reference.embed(batch, spec)), await timed(runs, () => models.quantized.embed(batch, spec))];
  const metrics: Record<string, number> = {
    cosine_mean: mean(cosines), cosine_min: Math.min(...cosines), max_abs_error: maxAbs, mean_abs_error: absSum / Math.max(1, count),
    latency_ratio: lb / la, latency_p50_ms: lb, latency_p50_ms_reference: la,
  };
  if (spearmans.length) metrics.spearman = mean(spearmans);
  if (groups.length) metrics.top1_agreement = mean(top1);
  return { metrics, details: { compared: 'pooled embeddings', pooling: spec.pooling, normalize: spec.normalize, prefixes: spec.prefixes, texts: texts.length, queries: groups.length } };
}

/** A reranker's agreement: per query, the scores of its passages ranked alike (Spearman, top-1), and score error. */
export async function compareRerankers(models: Pair, samples: EvalSample[], spec: RerankSpec, runs: number): Promise<{ metrics: Record<string, number>; details: Record<string, unknown> }> {
  const groups = samples.filter((s): s is { query: string; passages: string[] } => 'query' in s);
  if (!groups.length) {
    throw new InputError('verifying a reranker needs queries with candidate passages: verify.eval lines {"query": "...", "passages": ["...", ...]}', {
      field: 'verify.eval', expected: 'a JSON Lines file, one query and its passages per line', hint: 'see recipes/rag-service/eval.jsonl',
    });
  }
  const spearmans: number[] = [], top1: number[] = [];
  let maxAbs = 0, absSum = 0, count = 0;
  const disagreements: { query: string; reference: number; quantized: number }[] = [];
  for (const g of groups) {
    const pairs = g.passages.map((p) => [g.query, p] as const);
    const [sa, sb] = [(await models.reference.score(pairs, spec.max_tokens)).values, (await models.quantized.score(pairs, spec.max_tokens)).values];
    if (sa.length > 1) spearmans.push(spearman(sa, sb));
    const same = argmax(sa) === argmax(sb);
    top1.push(same ? 1 : 0);
    if (!same && disagreements.length < 5) disagreements.push({ query: g.query, reference: argmax(sa), quantized: argmax(sb) });
    maxAbs = Math.max(maxAbs, maxAbsError(sa, sb));
    sa.forEach((x, i) => { absSum += Math.abs(x - sb[i]!); count++; });
  }
  const p0 = groups[0]!.passages.map((p) => [groups[0]!.query, p] as const);
  const [la, lb] = [await timed(runs, () => models.reference.score(p0, spec.max_tokens)), await timed(runs, () => models.quantized.score(p0, spec.max_tokens))];
  const metrics: Record<string, number> = {
    top1_agreement: mean(top1), max_abs_error: maxAbs, mean_abs_error: absSum / Math.max(1, count), latency_ratio: lb / la, latency_p50_ms: lb, latency_p50_ms_reference: la,
  };
  if (spearmans.length) metrics.spearman = mean(spearmans);
  return { metrics, details: { compared: 'scores of (query, passage) pairs, ranked per query', queries: groups.length, pairs: count, top1_disagreements: disagreements } };
}

/** Refuses gates that say nothing for this kind of model, before anything runs. */
export function checkRetrievalGates(spec: VerifySpec, kind: 'embedding' | 'rerank'): void {
  if (kind === 'rerank') {
    for (const g of ['min_cosine', 'min_mean_cosine'] as const) {
      if (spec[g] !== undefined) {
        throw new InputError(`verify.${g} cannot discriminate for a reranker: it gives one score per pair`, { field: `verify.${g}`, expected: 'min_spearman, min_top1, max_abs_error for rerankers', hint: `replace ${g} by e.g. min_spearman: 0.95 and min_top1: 0.9` });
      }
    }
  }
}
