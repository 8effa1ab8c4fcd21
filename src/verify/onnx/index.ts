// Verification of ONNX quantization in onnxruntime-node: the original and the quantized model run on the
// same inputs (real text through the model's tokenizer for text models, generated inputs of the declared
// shapes otherwise); agreement, size, latency and memory are measured and checked against recipe gates.
import { readdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { performance } from 'node:perf_hooks';
import type * as ort from 'onnxruntime-node';
import { onnxDiskSize, readOnnx, type ModelProto } from '../../formats/onnx/index.js';
import type { VerifySpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { prettyJson } from '../../util/json.js';
import { writeFileAtomic } from '../../util/fs.js';
import { buildReport, type VerifyReport } from '../gates.js';
import { DEFAULT_EVAL_TEXTS } from './eval-texts.js';
import { generateInputs, modelInputs, type Feeds, type GenerateOptions } from './inputs.js';
import { argmax, cosine, maxAbsError, percentile, spearman } from './metrics.js';
import { openSession, peakRss, runSession } from './session.js';
import { textFeeds } from './text.js';

export { DEFAULT_EVAL_TEXTS } from './eval-texts.js';
export { generateInputs, modelInputs, prng, type Feeds, type GenerateOptions, type InputSpec } from './inputs.js';
export { cosine, spearman, maxAbsError, percentile } from './metrics.js';
export { openSession, peakRss } from './session.js';
export { textFeeds } from './text.js';

const SUFFIXES = ['_quantized', '_int8', '_uint8', '_fp16'];
/** Tasks whose outputs are class scores: top-1 and rank agreement are meaningful. */
const CLASSIFIER_TASKS = new Set(['text-classification', 'zero-shot-classification', 'token-classification', 'image-classification', 'audio-classification', 'sentiment-analysis']);

export interface VerifyOptions {
  task?: string;
  evalTexts?: string[];
  /** Shapes and values for generated inputs (non-text models). */
  inputs?: GenerateOptions;
  /** Generated input sets for non-text models (default 8). */
  samples?: number;
  /** Measure peak RSS in a child process (default true). */
  measureMemory?: boolean;
}

async function listOnnx(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listOnnx(dir, rel)));
    else if (e.isFile() && rel.endsWith('.onnx')) out.push(rel);
  }
  return out.sort();
}

/** Pairs each quantized file of quantDir with its original in srcDir (onnx/model_quantized.onnx <- onnx/model.onnx or model.onnx). */
export async function pairModels(srcDir: string, quantDir: string): Promise<{ source: string; quantized: string }[]> {
  const src = new Set(await listOnnx(srcDir));
  const pairs: { source: string; quantized: string }[] = [];
  for (const q of await listOnnx(quantDir)) {
    const stem = posix.basename(q, '.onnx');
    const suffix = SUFFIXES.find((s) => stem.endsWith(s));
    if (!suffix) continue;
    const orig = `${stem.slice(0, -suffix.length)}.onnx`;
    const dir = posix.dirname(q);
    const candidates = [dir === '.' ? orig : `${dir}/${orig}`, ...(dir === 'onnx' ? [orig] : [])];
    const source = candidates.find((c) => src.has(c));
    if (source) pairs.push({ source, quantized: q });
  }
  if (!pairs.length) {
    throw new InputError(`no quantized ONNX file in ${quantDir} has an original in ${srcDir}`, {
      file: quantDir, expected: 'files named <name>_quantized/_int8/_uint8/_fp16.onnx next to <name>.onnx in the source', hint: 'run the quantize step first',
    });
  }
  return pairs;
}

function floatData(v: ort.Tensor): Float32Array | undefined {
  return v.type === 'float32' ? (v.data as Float32Array) : undefined;
}

interface Pairwise { cosines: number[]; maxAbs: number; top1: number[]; spearmans: number[]; scoresA: number[]; scoresB: number[] }

/** Compares one output of one sample; rows of the last dim drive top-1 and rank agreement. */
function compareOutput(a: ort.Tensor, b: ort.Tensor, classifier: boolean, acc: Pairwise): void {
  const x = floatData(a), y = floatData(b);
  if (!x || !y || x.length !== y.length) return;
  acc.cosines.push(cosine(x, y));
  acc.maxAbs = Math.max(acc.maxAbs, maxAbsError(x, y));
  if (!classifier) return;
  const width = a.dims[a.dims.length - 1] ?? 1;
  if (width === 1) {
    // A reranker: one score per input; ranks are compared across inputs.
    acc.scoresA.push(...x);
    acc.scoresB.push(...y);
    return;
  }
  for (let r = 0; r + width <= x.length; r += width) {
    const ra = x.subarray(r, r + width), rb = y.subarray(r, r + width);
    acc.top1.push(argmax(ra) === argmax(rb) ? 1 : 0);
    acc.spearmans.push(spearman(ra, rb));
  }
}

async function latencyP50(session: ort.InferenceSession, feeds: Feeds, runs: number, file: string): Promise<number> {
  await runSession(session, feeds, file); // warm-up: first run allocates
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await runSession(session, feeds, file);
    times.push(performance.now() - t0);
  }
  return percentile(times, 0.5);
}

function isTextModel(model: ModelProto): boolean {
  return modelInputs(model).some((i) => i.name === 'input_ids');
}

/**
 * Runs original and quantized models of `srcDir`/`quantDir` on the same inputs and checks `spec`'s gates.
 * Returns the report (gates evaluated); the caller decides to enforce (enforceGates) and stores it.
 */
export async function verifyOnnxModel(modelId: string, srcDir: string, quantDir: string, spec: VerifySpec, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const pairs = await pairModels(srcDir, quantDir);
  const runs = spec.runs ?? 20;
  const all: Pairwise = { cosines: [], maxAbs: 0, top1: [], spearmans: [], scoresA: [], scoresB: [] };
  let srcBytes = 0, quantBytes = 0;
  const perFile: Record<string, unknown> = {};
  let latencyRatio: number | undefined, rss: number | undefined, rssRef: number | undefined;
  let inputKind = 'generated';
  for (const [index, pair] of pairs.entries()) {
    const srcFile = join(srcDir, pair.source), qFile = join(quantDir, pair.quantized);
    const model = await readOnnx(srcFile);
    const [a, b] = [await openSession(srcFile), await openSession(qFile)];
    let feedsList: Feeds[];
    if (isTextModel(model)) {
      inputKind = 'text';
      const texts = opts.evalTexts?.length ? opts.evalTexts : [...DEFAULT_EVAL_TEXTS];
      feedsList = await textFeeds(quantDir, texts, modelInputs(model).map((i) => i.name));
    } else {
      feedsList = generateInputs(modelInputs(model), opts.samples ?? 8, opts.inputs ?? fromSpec(spec.inputs));
    }
    const classifier = (opts.task !== undefined && CLASSIFIER_TASKS.has(opts.task)) || (opts.task === undefined && a.outputNames.includes('logits'));
    const acc: Pairwise = { cosines: [], maxAbs: 0, top1: [], spearmans: [], scoresA: [], scoresB: [] };
    const perOutput = new Map<string, Pairwise>();
    for (const feeds of feedsList) {
      const [ra, rb] = [await runSession(a, feeds, srcFile), await runSession(b, feeds, qFile)];
      for (const name of a.outputNames) {
        if (!ra[name] || !rb[name]) continue;
        compareOutput(ra[name], rb[name], classifier, acc);
        if (!perOutput.has(name)) perOutput.set(name, { cosines: [], maxAbs: 0, top1: [], spearmans: [], scoresA: [], scoresB: [] });
        compareOutput(ra[name], rb[name], false, perOutput.get(name)!);
      }
    }
    const outputs = Object.fromEntries([...perOutput].map(([k, v]) => [k, { cosine_mean: mean(v.cosines), cosine_min: Math.min(...v.cosines), max_abs_error: v.maxAbs }]));
    if (acc.scoresA.length > 1) {
      acc.spearmans.push(spearman(acc.scoresA, acc.scoresB));
      acc.top1.push(argmax(acc.scoresA) === argmax(acc.scoresB) ? 1 : 0);
    }
    const sizes = [await onnxDiskSize(srcFile), await onnxDiskSize(qFile)] as const;
    srcBytes += sizes[0];
    quantBytes += sizes[1];
    const fileMetrics: Record<string, number> = {
      cosine_mean: mean(acc.cosines), cosine_min: Math.min(...acc.cosines), max_abs_error: acc.maxAbs, size_ratio: sizes[1] / sizes[0], samples: feedsList.length,
    };
    if (acc.top1.length) fileMetrics.top1_agreement = mean(acc.top1);
    if (acc.spearmans.length) fileMetrics.spearman = mean(acc.spearmans);
    // Latency and memory: measured on the main (first) file, on its first input set.
    if (index === 0) {
      const [la, lb] = [await latencyP50(a, feedsList[0]!, runs, srcFile), await latencyP50(b, feedsList[0]!, runs, qFile)];
      latencyRatio = lb / la;
      Object.assign(fileMetrics, { latency_p50_ms: lb, latency_p50_ms_reference: la });
      if (opts.measureMemory !== false) {
        rssRef = await peakRss(srcFile, feedsList[0]!);
        rss = await peakRss(qFile, feedsList[0]!);
      }
    }
    await Promise.all([a.release(), b.release()]);
    perFile[pair.quantized] = { source: pair.source, metrics: fileMetrics, outputs };
    all.cosines.push(...acc.cosines);
    all.maxAbs = Math.max(all.maxAbs, acc.maxAbs);
    all.top1.push(...acc.top1);
    all.spearmans.push(...acc.spearmans);
  }
  const metrics: Record<string, number> = {
    cosine_mean: mean(all.cosines),
    cosine_min: all.cosines.length ? Math.min(...all.cosines) : Number.NaN,
    max_abs_error: all.maxAbs,
    size_ratio: quantBytes / srcBytes,
  };
  if (all.top1.length) metrics.top1_agreement = mean(all.top1);
  if (all.spearmans.length) metrics.spearman = mean(all.spearmans);
  if (latencyRatio !== undefined) metrics.latency_ratio = latencyRatio;
  if (rss !== undefined) metrics.peak_rss_bytes = rss;
  if (rssRef !== undefined) metrics.peak_rss_bytes_reference = rssRef;
  return buildReport(modelId, 'onnx', spec, metrics, { files: perFile, inputs: inputKind, runs, source_bytes: srcBytes, quantized_bytes: quantBytes });
}

/** The recipe's snake_case input block as generator options. */
export function fromSpec(s: VerifySpec['inputs']): GenerateOptions | undefined {
  return s ? { dims: s.dims, values: s.values, defaultDim: s.default_dim } : undefined;
}

function mean(v: number[]): number {
  return v.length ? v.reduce((s, x) => s + x, 0) / v.length : Number.NaN;
}

/** Stores a report as a JSON artifact (sorted keys, atomic). */
export async function writeVerifyReport(file: string, report: VerifyReport): Promise<void> {
  await writeFileAtomic(file, prettyJson(report));
}

