// GGUF text-embedding models (bert, nomic-bert) in real llama.cpp (node-llama-cpp, CPU): the embedding
// of each eval text from the converted file is compared with onnxruntime's on the checkpoint's own ONNX
// export (same weights, the model's own tokenizer, the GGUF's pooling), which checks the conversion,
// vocabulary included; and the quantized file's embeddings with the converted file's.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { LlamaModel } from 'node-llama-cpp';
import type { Tensor } from 'onnxruntime-node';
import { EMBEDDING_ARCHS, POOLING_TYPES } from '../../convert/architectures/index.js';
import { DEFAULT_EVAL_TEXTS, loadTokenizer, openSession, runSession, textFeeds } from '../../model/onnx/index.js';
import type { VerifySpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { buildReport, type VerifyReport } from '../gates.js';
import { cosine } from '../onnx/metrics.js';
import { withModel } from './runner.js';

/** The conversion gate applied when the recipe names none: the bar for F32/F16 files. */
export const DEFAULT_MIN_ONNX_COSINE = 0.999;

export interface VerifyEmbeddingOptions {
  /** Eval texts (default: the built-in sentences). */
  texts?: string[];
  /** The checkpoint folder (tokenizer files, maybe an ONNX export). */
  sourceDir?: string;
  threads?: number;
}

interface Embedded {
  arch: string;
  pooling: string;
  vectors: number[][];
  /** llama.cpp's token ids of each text, without the added CLS/SEP. */
  tokens: number[][];
}

const POOLING_NAMES = Object.fromEntries(Object.entries(POOLING_TYPES).map(([k, v]) => [v, k])) as Record<number, string>;

/** The pooled embedding of each text, as llama-server's /v1/embeddings computes it (before normalizing). */
async function embed(file: string, texts: string[], threads: number): Promise<Embedded> {
  return withModel(file, async (model: LlamaModel) => {
    const meta = model.fileInfo.metadata as unknown as Record<string, Record<string, unknown>> & { general: { architecture: string } };
    const arch = meta.general.architecture;
    if (!EMBEDDING_ARCHS.includes(arch)) {
      throw new InputError(`${file} is a ${arch} model, not a text-embedding encoder (${EMBEDDING_ARCHS.join(', ')})`, {
        file, field: 'task', hint: 'task: feature-extraction is for embedding models; a decoder is verified by perplexity (leave task out or set text-generation)',
      });
    }
    const poolingId = meta[arch]?.pooling_type;
    const pooling = typeof poolingId === 'number' ? POOLING_NAMES[poolingId] : undefined;
    if (!pooling || pooling === 'none') {
      throw new InputError(`${file} has no pooling type, so llama-server cannot return one embedding per text`, {
        file, field: 'files', hint: 'lock the sentence-transformers files too (modules.json and 1_Pooling/config.json), as convert_hf_to_gguf.py reads the pooling from them',
      });
    }
    const ctxSize = Math.min(model.trainContextSize || 512, 512);
    const context = await model.createEmbeddingContext({ contextSize: ctxSize, threads });
    try {
      const vectors: number[][] = [];
      for (const t of texts) vectors.push([...(await context.getEmbeddingFor(t)).vector]);
      return { arch, pooling, vectors, tokens: texts.map((t) => model.tokenize(t, false).map(Number)) };
    } finally {
      await context.dispose();
    }
  });
}

/** The ONNX export of the checkpoint: onnx/model.onnx or model.onnx, else the one unquantized .onnx file. */
export async function findOnnxExport(dir: string): Promise<string | undefined> {
  for (const p of ['onnx/model.onnx', 'model.onnx']) {
    if (await stat(join(dir, p)).then((s) => s.isFile(), () => false)) return join(dir, p);
  }
  const candidates: string[] = [];
  for (const sub of ['', 'onnx']) {
    const names = await readdir(join(dir, sub)).catch(() => [] as string[]);
    for (const n of names) if (n.endsWith('.onnx') && !/_(quantized|int8|uint8|fp16|q4|q4f16|bnb4)\.onnx$/.test(n)) candidates.push(join(dir, sub, n));
  }
  return candidates.length === 1 ? candidates[0] : undefined;
}

function pool(hidden: Tensor, mask: ArrayLike<bigint | number>, pooling: string): number[] {
  const [, seq, dim] = hidden.dims as [number, number, number];
  const h = hidden.data as Float32Array;
  const out = new Array<number>(dim).fill(0);
  if (pooling === 'cls') for (let j = 0; j < dim; j++) out[j] = h[j]!;
  else if (pooling === 'last') for (let j = 0; j < dim; j++) out[j] = h[(seq - 1) * dim + j]!;
  else {
    let n = 0;
    for (let i = 0; i < seq; i++) {
      if (Number(mask[i]) === 0) continue;
      n++;
      for (let j = 0; j < dim; j++) out[j]! += h[i * dim + j]!;
    }
    for (let j = 0; j < dim; j++) out[j]! /= Math.max(1, n);
  }
  return out;
}

/** onnxruntime's pooled embeddings of `texts` through the model's own tokenizer; token ids without specials. */
async function onnxEmbeddings(onnxFile: string, sourceDir: string, texts: string[], pooling: string): Promise<{ vectors: number[][]; tokens: number[][] }> {
  const session = await openSession(onnxFile);
  const feeds = await textFeeds(sourceDir, texts, [...session.inputNames], 512);
  const hiddenName = session.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : session.outputNames[0]!;
  const vectors: number[][] = [];
  for (const f of feeds) {
    const out = await runSession(session, f, onnxFile);
    const t = out[hiddenName]!;
    // An export that pools itself (sentence_embedding, [batch, dim]) is compared as it is.
    vectors.push(t.dims.length === 2 ? Array.from(t.data as Float32Array) : pool(t, (f.attention_mask?.data ?? new Array(t.dims[1]).fill(1)) as ArrayLike<bigint>, pooling));
  }
  const tokenizer = await loadTokenizer(sourceDir) as unknown as (t: string, o: { add_special_tokens: boolean }) => { input_ids: { data: ArrayLike<bigint | number> } };
  return { vectors, tokens: texts.map((t) => Array.from(tokenizer(t, { add_special_tokens: false }).input_ids.data, Number)) };
}

function cosines(a: number[][], b: number[][]): number[] {
  return a.map((v, i) => cosine(v, b[i]!));
}

const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

/**
 * Verifies a GGUF embedding model. `quantFile` undefined: the converted file ships as it is (F16/F32)
 * and only the conversion is checked. The ONNX comparison is gated by `min_onnx_cosine` (default
 * DEFAULT_MIN_ONNX_COSINE when an export is there); without an export the report says the conversion
 * went unchecked.
 */
export async function verifyGgufEmbeddings(
  modelId: string, referenceFile: string, quantFile: string | undefined, spec: VerifySpec, opts: VerifyEmbeddingOptions = {},
): Promise<VerifyReport> {
  for (const key of ['data', 'decode', 'decision_threshold', 'max_kld', 'min_same_top', 'max_ppl_ratio'] as const) {
    if (spec[key] !== undefined) {
      throw new InputError(`verify.${key} does not apply to ${modelId}: an embedding model is verified by the cosine of its embeddings`, {
        field: `models.${modelId}.verify.${key}`, expected: 'min_cosine, min_mean_cosine, min_onnx_cosine, max_size_ratio, eval', hint: `remove verify.${key}`,
      });
    }
  }
  const texts = opts.texts?.length ? opts.texts : [...DEFAULT_EVAL_TEXTS];
  const threads = opts.threads ?? 1;
  const ref = await embed(referenceFile, texts, threads);
  const quant = quantFile ? await embed(quantFile, texts, threads) : undefined;
  const metrics: Record<string, number> = { texts: texts.length, embedding_dim: ref.vectors[0]?.length ?? 0 };
  const details: Record<string, unknown> = { runner: 'llama.cpp (node-llama-cpp, CPU) and onnxruntime-node', arch: ref.arch, pooling: ref.pooling };
  const warnings: string[] = [];
  if (quant) {
    const c = cosines(quant.vectors, ref.vectors);
    metrics.cosine_min = Math.min(...c);
    metrics.cosine_mean = mean(c);
    const [a, b] = await Promise.all([stat(referenceFile), stat(quantFile!)]);
    metrics.size_ratio = b.size / a.size;
    details.quantized = { file: quantFile, bytes: b.size };
  }
  details.reference = { file: referenceFile, bytes: (await stat(referenceFile)).size };
  const onnxFile = opts.sourceDir ? await findOnnxExport(opts.sourceDir) : undefined;
  let gateSpec: VerifySpec = spec;
  if (onnxFile) {
    const onnx = await onnxEmbeddings(onnxFile, opts.sourceDir!, texts, ref.pooling);
    const c = cosines(ref.vectors, onnx.vectors);
    metrics.onnx_cosine_min = Math.min(...c);
    metrics.onnx_cosine_mean = mean(c);
    if (quant) metrics.quantized_onnx_cosine_min = Math.min(...cosines(quant.vectors, onnx.vectors));
    const differ = texts.flatMap((t, i) => (onnx.tokens[i]!.join(',') === ref.tokens[i]!.join(',') ? [] : [t]));
    metrics.token_agreement = (texts.length - differ.length) / texts.length;
    details.onnx = { file: onnxFile.slice(opts.sourceDir!.length + 1), tokenized_differently: differ.slice(0, 5) };
    if (spec.min_onnx_cosine === undefined) gateSpec = { ...spec, min_onnx_cosine: DEFAULT_MIN_ONNX_COSINE };
  } else {
    warnings.push(`${modelId}: the conversion was not checked against onnxruntime (the checkpoint has no ONNX export); lock onnx/model.onnx with the model to check it`);
  }
  return buildReport(modelId, 'gguf', gateSpec, metrics, details, [], {
    warnings,
    hints: {
      min_onnx_cosine: onnxFile
        ? 'llama.cpp and onnxruntime disagree on the same weights: the conversion (tensor names, vocabulary, pooling) is wrong, or the ONNX export is not of these weights'
        : 'the checkpoint has no ONNX export to compare with: lock onnx/model.onnx with the model, or remove verify.min_onnx_cosine',
    },
  });
}
