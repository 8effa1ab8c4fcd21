// Verification of ONNX quantization in onnxruntime-node: the original and the quantized model run on the
// same inputs (the recipe's data folder, real text through the model's tokenizer for text models, generated
// inputs of the declared shapes otherwise, said loudly); agreement, size, latency and memory are measured
// and checked against recipe gates. Outputs with one value per sample are compared by error and decision
// (cosine says nothing there); a CTC output can be decoded and compared as sequences.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { performance } from 'node:perf_hooks';
import type * as ort from 'onnxruntime-node';
import { onnxDiskSize, readOnnx, type ModelProto } from '../../formats/onnx/index.js';
import type { EmbeddingSpec, RerankSpec, VerifySpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { prettyJson } from '../../util/json.js';
import { safeJoin, writeFileAtomic } from '../../util/fs.js';
import { buildReport, type VerifyReport } from '../gates.js';
import { DEFAULT_EVAL_TEXTS, dataFeeds, fromSpec, generateInputs, modelInputs, openSession, peakRss, runSession, TextModel, textFeeds, type Feeds, type GenerateOptions } from '../../model/onnx/index.js';
import { checkRetrievalGates, compareEmbeddings, compareRerankers, parseEvalSamples } from './retrieval.js';
import { argmax, cosine, ctcGreedy, editDistance, maxAbsError, percentile, spearman } from './metrics.js';

export { cosine, ctcGreedy, editDistance, spearman, maxAbsError, percentile } from './metrics.js';
export { parseEvalSamples, type EvalSample } from './retrieval.js';

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
  /** Folder `verify.data.path` is relative to (the recipe's); default the working directory. */
  dataDir?: string;
  /** What the quantize step recorded (its artifact meta: params per source file): explains a file nothing was done to. */
  quantization?: { params?: Record<string, unknown> };
  /** The recipe's embedding declaration: compare pooled sentence embeddings, not raw token states. */
  embedding?: EmbeddingSpec;
  /** The recipe's rerank declaration: compare the ranking of passages per query. */
  rerank?: RerankSpec;
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

function floatData(v: ort.Tensor | undefined): Float32Array | undefined {
  return v?.type === 'float32' ? (v.data as Float32Array) : undefined;
}

/** Values one sample contributes to an output: 1 for a score per input ([1], [N, 1], a scalar). */
function valuesPerSample(t: ort.Tensor): number {
  const batch = t.dims.length >= 2 ? Number(t.dims[0]) || 1 : 1;
  return (t.data as ArrayLike<number>).length / batch;
}

/** Agreement of one output over all samples of one file. */
interface OutputStats {
  cosines: number[];
  maxAbs: number;
  absSum: number;
  count: number;
  /** Outputs with one value per sample: cosine of one number with another is 1 whenever the signs agree. */
  scalarsA: number[];
  scalarsB: number[];
}

const newStats = (): OutputStats => ({ cosines: [], maxAbs: 0, absSum: 0, count: 0, scalarsA: [], scalarsB: [] });

/** Row-wise (last axis) argmax agreement and rank correlation, and greedy CTC decodings compared. */
interface Agreement {
  top1: number[]; spearmans: number[]; decisions: number[]; edits: number; refSymbols: number; sequences: number[];
  /** Samples whose decodings differ (with a dictionary: as text), for the report. */
  differing: { sample: string; reference: string; quantized: string }[];
}

const newAgreement = (): Agreement => ({ top1: [], spearmans: [], decisions: [], edits: 0, refSymbols: 0, sequences: [], differing: [] });
const MAX_EXAMPLES = 5;

function compareRows(x: Float32Array, y: Float32Array, width: number, withSpearman: boolean, acc: Agreement): void {
  for (let r = 0; r + width <= x.length; r += width) {
    const ra = x.subarray(r, r + width), rb = y.subarray(r, r + width);
    acc.top1.push(argmax(ra) === argmax(rb) ? 1 : 0);
    if (withSpearman) acc.spearmans.push(spearman(ra, rb));
  }
}

/**
 * Symbols of a CTC dictionary file (one per line, for the classes after the blank, as PaddleOCR and CRNN
 * exports order them; the class after the last reads as a space, PaddleOCR's use_space_char).
 */
async function loadDictionary(srcDir: string, spec: NonNullable<VerifySpec['decode']>): Promise<string[] | undefined> {
  if (spec.dictionary === undefined) return undefined;
  const file = safeJoin(srcDir, spec.dictionary);
  try {
    if (!file) throw new Error('the path leaves the model folder');
    const size = (await stat(file)).size;
    if (size > 64 * 2 ** 20) throw new Error(`${size} bytes is too large for a dictionary`);
    const lines = (await readFile(file, 'utf8')).split(/\r?\n/);
    if (lines.at(-1) === '') lines.pop();
    return ['', ...lines, ' '];
  } catch (err) {
    throw new InputError(`verify.decode.dictionary: cannot read ${spec.dictionary} in the model folder: ${(err as Error).message}`, {
      field: 'verify.decode.dictionary', expected: 'a file of the model (listed in its files), one symbol per line', hint: 'add the dictionary to the model\'s files, or remove decode.dictionary', cause: err,
    });
  }
}

/** Code points of a decoding read through the dictionary, leading and trailing spaces dropped (as OCR output is used). */
function asText(seq: number[], dictionary: string[]): number[] {
  return Array.from(seq.map((c) => dictionary[c] ?? '\ufffd').join('').trim(), (ch) => ch.codePointAt(0)!);
}

function compareCtc(a: ort.Tensor, x: Float32Array, y: Float32Array, blank: number, dictionary: string[] | undefined, sample: string, acc: Agreement): void {
  const [n, steps, classes] = a.dims.map(Number) as [number, number, number];
  for (let i = 0; i < n; i++) {
    const block = steps * classes;
    let sa = ctcGreedy(x.subarray(i * block, (i + 1) * block), steps, classes, blank);
    let sb = ctcGreedy(y.subarray(i * block, (i + 1) * block), steps, classes, blank);
    if (dictionary) [sa, sb] = [asText(sa, dictionary), asText(sb, dictionary)];
    const d = editDistance(sa, sb);
    acc.edits += d;
    acc.refSymbols += sa.length;
    acc.sequences.push(d === 0 ? 1 : 0);
    if (d > 0 && acc.differing.length < MAX_EXAMPLES) {
      const show = (s: number[]) => (dictionary ? String.fromCodePoint(...s) : s.join(' '));
      acc.differing.push({ sample: n > 1 ? `${sample}[${i}]` : sample, reference: show(sa), quantized: show(sb) });
    }
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

/** The output to CTC-decode: the one the recipe names, else the first of rank 3. */
function ctcOutput(spec: VerifySpec, outputs: ort.InferenceSession.OnnxValueMapType, names: readonly string[]): string | undefined {
  if (spec.decode?.type !== 'ctc') return undefined;
  const name = spec.decode.output ?? names.find((n) => outputs[n]?.dims.length === 3);
  const t = name !== undefined ? outputs[name] : undefined;
  if (!name || !t || t.dims.length !== 3 || t.type !== 'float32') {
    throw new InputError(`verify.decode: ${spec.decode.output ? `output ${spec.decode.output} is not` : 'no output is'} a float [batch, time, classes] tensor to CTC-decode (outputs: ${names.map((n) => `${n}[${outputs[n]?.dims.join(',') ?? '?'}]`).join(' ')})`, {
      field: 'verify.decode.output', expected: 'the name of a rank-3 float output (scores or log-probabilities per time step)', hint: 'name the right output, or remove verify.decode',
    });
  }
  return name;
}

const SYNTHETIC_WARNING = 'verification ran on generated inputs only (no real samples): agreement on random inputs says little about real data '
  + '(a static-INT8 text recogniser that misread 34 of 60 real lines measured cosine 0.95 on them); give real samples under verify.data (path, kind, preprocess)';

type NothingQuantized = { reason: string; hint: string };

/**
 * Runs original and quantized models of `srcDir`/`quantDir` on the same inputs and checks `spec`'s gates.
 * Returns the report (gates evaluated); the caller decides to enforce (enforceGates) and stores it.
 */
export async function verifyOnnxModel(modelId: string, srcDir: string, quantDir: string, spec: VerifySpec, opts: VerifyOptions = {}): Promise<VerifyReport> {
  if (opts.embedding || opts.rerank) return verifyRetrievalModel(modelId, srcDir, quantDir, spec, opts);
  const pairs = await pairModels(srcDir, quantDir);
  const runs = spec.runs ?? 20;
  const all = { stats: newStats(), agreement: newAgreement(), scalarOutputs: [] as string[] };
  let srcBytes = 0, quantBytes = 0;
  const perFile: Record<string, unknown> = {};
  let latencyRatio: number | undefined, rss: number | undefined, rssRef: number | undefined;
  const kinds = new Set<string>();
  const nothing: (NothingQuantized & { file: string })[] = [];
  let data: Record<string, unknown> | undefined;
  for (const [index, pair] of pairs.entries()) {
    const srcFile = join(srcDir, pair.source), qFile = join(quantDir, pair.quantized);
    const model = await readOnnx(srcFile);
    let feedsList: Feeds[];
    let sampleNames: string[] | undefined;
    let kind: 'data' | 'text' | 'generated';
    if (spec.data) {
      kind = 'data';
      const d = await dataFeeds(modelInputs(model), spec.data, { field: 'verify.data', baseDir: opts.dataDir ?? process.cwd() }, opts.inputs ?? fromSpec(spec.inputs));
      feedsList = d.feeds;
      sampleNames = d.files;
      data = { path: spec.data.path, kind: spec.data.kind, files: d.files.length, digest: d.digest };
    } else if (isTextModel(model)) {
      kind = 'text';
      const texts = opts.evalTexts?.length ? opts.evalTexts : [...DEFAULT_EVAL_TEXTS];
      feedsList = await textFeeds(quantDir, texts, modelInputs(model).map((i) => i.name));
    } else {
      kind = 'generated';
      feedsList = generateInputs(modelInputs(model), opts.samples ?? 8, opts.inputs ?? fromSpec(spec.inputs));
    }
    kinds.add(kind);
    const [a, b] = [await openSession(srcFile), await openSession(qFile)];
    const classifier = (opts.task !== undefined && CLASSIFIER_TASKS.has(opts.task)) || (opts.task === undefined && a.outputNames.includes('logits'));
    const agreement = newAgreement();
    const perOutput = new Map<string, OutputStats>();
    let ctc: string | undefined;
    const dictionary = spec.decode ? await loadDictionary(srcDir, spec.decode) : undefined;
    for (const [k, feeds] of feedsList.entries()) {
      const [ra, rb] = [await runSession(a, feeds, srcFile), await runSession(b, feeds, qFile)];
      if (k === 0) ctc = ctcOutput(spec, ra, a.outputNames);
      for (const name of a.outputNames) {
        const x = floatData(ra[name]), y = floatData(rb[name]);
        if (!x || !y || x.length !== y.length) continue;
        if (!perOutput.has(name)) perOutput.set(name, newStats());
        const st = perOutput.get(name)!;
        st.maxAbs = Math.max(st.maxAbs, maxAbsError(x, y));
        for (let i = 0; i < x.length; i++) st.absSum += Math.abs(x[i]! - y[i]!);
        st.count += x.length;
        if (valuesPerSample(ra[name]!) === 1) {
          st.scalarsA.push(...x);
          st.scalarsB.push(...y);
          continue;
        }
        st.cosines.push(cosine(x, y));
        if (name === ctc) {
          compareCtc(ra[name]!, x, y, spec.decode?.blank ?? 0, dictionary, sampleNames?.[k] ?? `sample ${k}`, agreement);
          compareRows(x, y, Number(ra[name]!.dims[2]), false, agreement);
        } else if (classifier) {
          compareRows(x, y, Number(ra[name]!.dims[ra[name]!.dims.length - 1] ?? 1), true, agreement);
        }
      }
    }
    const outputs: Record<string, Record<string, number | string>> = {};
    for (const [name, st] of perOutput) {
      const o: Record<string, number | string> = { max_abs_error: st.maxAbs, mean_abs_error: st.absSum / st.count };
      if (st.cosines.length) Object.assign(o, { cosine_mean: mean(st.cosines), cosine_min: Math.min(...st.cosines) });
      if (st.scalarsA.length) {
        // A score per input: its decision at a threshold, and (classifiers, rerankers) its ranking over inputs.
        const threshold = spec.decision_threshold ?? (st.scalarsA.every((v) => v >= 0 && v <= 1) ? 0.5 : 0);
        const decisions = st.scalarsA.map((v, i) => ((v >= threshold) === (st.scalarsB[i]! >= threshold) ? 1 : 0));
        agreement.decisions.push(...decisions);
        Object.assign(o, { values: 'one per sample', decision_threshold: threshold, decision_agreement: mean(decisions) });
        if (!all.scalarOutputs.includes(name)) all.scalarOutputs.push(name);
        if (classifier && st.scalarsA.length > 1) {
          agreement.spearmans.push(spearman(st.scalarsA, st.scalarsB));
          agreement.top1.push(argmax(st.scalarsA) === argmax(st.scalarsB) ? 1 : 0);
        }
      }
      outputs[name] = o;
      all.stats.cosines.push(...st.cosines);
      all.stats.maxAbs = Math.max(all.stats.maxAbs, st.maxAbs);
      all.stats.absSum += st.absSum;
      all.stats.count += st.count;
    }
    const sizes = [await onnxDiskSize(srcFile), await onnxDiskSize(qFile)] as const;
    srcBytes += sizes[0];
    quantBytes += sizes[1];
    const fileStats = [...perOutput.values()];
    const fileMetrics: Record<string, number> = agreementMetrics({
      cosines: fileStats.flatMap((s) => s.cosines), maxAbs: Math.max(0, ...fileStats.map((s) => s.maxAbs)), absSum: fileStats.reduce((t, s) => t + s.absSum, 0), count: fileStats.reduce((t, s) => t + s.count, 0), scalarsA: [], scalarsB: [],
    }, agreement);
    Object.assign(fileMetrics, { size_ratio: sizes[1] / sizes[0], samples: feedsList.length });
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
    const recorded = Object.values(opts.quantization?.params ?? {}).find((p) => (p as { output?: string } | undefined)?.output === pair.quantized) as { nothing_quantized?: NothingQuantized } | undefined;
    if (recorded?.nothing_quantized) nothing.push({ file: pair.quantized, ...recorded.nothing_quantized });
    perFile[pair.quantized] = { source: pair.source, inputs: kind, metrics: fileMetrics, outputs, ...(ctc && { decode: { output: ctc, differing: agreement.differing } }) };
    for (const key of ['top1', 'spearmans', 'decisions', 'sequences'] as const) all.agreement[key].push(...agreement[key]);
    all.agreement.edits += agreement.edits;
    all.agreement.refSymbols += agreement.refSymbols;
  }
  const cosineGate = (['min_cosine', 'min_mean_cosine'] as const).find((g) => spec[g] !== undefined);
  if (cosineGate && !all.stats.cosines.length && all.scalarOutputs.length) {
    throw new InputError(`verify.${cosineGate} cannot discriminate for ${modelId}: every output (${all.scalarOutputs.join(', ')}) has one value per sample, and the cosine of one number with another is 1 whenever their signs agree`, {
      field: `verify.${cosineGate}`, expected: 'max_abs_error, max_mean_abs_error or min_decision_agreement (at verify.decision_threshold) for one-value outputs',
      hint: `replace ${cosineGate} by e.g. min_decision_agreement: 0.99 and max_abs_error: 0.05`,
    });
  }
  const metrics = agreementMetrics(all.stats, all.agreement);
  metrics.size_ratio = quantBytes / srcBytes;
  if (latencyRatio !== undefined) metrics.latency_ratio = latencyRatio;
  if (rss !== undefined) metrics.peak_rss_bytes = rss;
  if (rssRef !== undefined) metrics.peak_rss_bytes_reference = rssRef;
  const synthetic = kinds.has('generated');
  const details: Record<string, unknown> = { files: perFile, inputs: synthetic ? 'generated' : kinds.has('text') ? 'text' : 'data', runs, source_bytes: srcBytes, quantized_bytes: quantBytes };
  if (data) details.data = data;
  const hints: Record<string, string> = {};
  if (nothing.length) {
    details.nothing_quantized = nothing;
    hints.max_size_ratio = nothing.map((n) => `nothing was quantized in ${n.file} (${n.reason}): ${n.hint}`).join('; ');
  }
  return buildReport(modelId, 'onnx', spec, metrics, details, [], { hints, syntheticInputs: synthetic, warnings: synthetic ? [SYNTHETIC_WARNING] : [] });
}

/**
 * An embedder or reranker, as the recipe declares it: the main ONNX file's original and quantized models
 * run through their tokenizer on the eval set (verify.eval; JSON lines of queries and passages).
 */
async function verifyRetrievalModel(modelId: string, srcDir: string, quantDir: string, spec: VerifySpec, opts: VerifyOptions): Promise<VerifyReport> {
  const kind = opts.embedding ? 'embedding' : 'rerank';
  checkRetrievalGates(spec, kind);
  const pair = (await pairModels(srcDir, quantDir))[0]!;
  const srcFile = join(srcDir, pair.source), qFile = join(quantDir, pair.quantized);
  const samples = parseEvalSamples(opts.evalTexts ?? []);
  const runs = spec.runs ?? 20;
  const models = { reference: await TextModel.open(quantDir, srcFile, { threads: 1 }), quantized: await TextModel.open(quantDir, qFile, { threads: 1 }) };
  let r: { metrics: Record<string, number>; details: Record<string, unknown> };
  try {
    r = opts.embedding ? await compareEmbeddings(models, samples, opts.embedding, runs) : await compareRerankers(models, samples, opts.rerank!, runs);
  } finally {
    await Promise.all([models.reference.release(), models.quantized.release()]);
  }
  const [srcBytes, quantBytes] = [await onnxDiskSize(srcFile), await onnxDiskSize(qFile)];
  r.metrics.size_ratio = quantBytes / srcBytes;
  if (opts.measureMemory !== false) {
    const model = await readOnnx(srcFile);
    const feeds = (await textFeeds(quantDir, [DEFAULT_EVAL_TEXTS[0]!], modelInputs(model).map((i) => i.name)))[0]!;
    r.metrics.peak_rss_bytes_reference = await peakRss(srcFile, feeds);
    r.metrics.peak_rss_bytes = await peakRss(qFile, feeds);
  }
  const details = { ...r.details, inputs: 'text', runs, files: { [pair.quantized]: { source: pair.source } }, source_bytes: srcBytes, quantized_bytes: quantBytes };
  return buildReport(modelId, 'onnx', spec, r.metrics, details, [], { syntheticInputs: false });
}

/** Metrics over compared outputs; a metric nothing measured is left out (a gate on it then fails as unmeasured). */
function agreementMetrics(st: OutputStats, ag: Agreement): Record<string, number> {
  const m: Record<string, number> = { max_abs_error: st.maxAbs };
  if (st.count) m.mean_abs_error = st.absSum / st.count;
  if (st.cosines.length) Object.assign(m, { cosine_mean: mean(st.cosines), cosine_min: Math.min(...st.cosines) });
  if (ag.top1.length) m.top1_agreement = mean(ag.top1);
  if (ag.spearmans.length) m.spearman = mean(ag.spearmans);
  if (ag.decisions.length) m.decision_agreement = mean(ag.decisions);
  if (ag.sequences.length) Object.assign(m, { cer: ag.edits / Math.max(1, ag.refSymbols), sequence_agreement: mean(ag.sequences) });
  return m;
}


function mean(v: number[]): number {
  return v.length ? v.reduce((s, x) => s + x, 0) / v.length : Number.NaN;
}

/** Stores a report as a JSON artifact (sorted keys, atomic). */
export async function writeVerifyReport(file: string, report: VerifyReport): Promise<void> {
  await writeFileAtomic(file, prettyJson(report));
}

