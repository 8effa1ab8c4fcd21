// What the onnx server serves per model: an embedder (/embed, /v1/embeddings), a reranker (/rerank), or any
// other ONNX model (opened, listed in /health). Embedders and rerankers run through src/model/onnx's
// TextModel (the model folder's own tokenizer + onnxruntime), behind a micro-batcher.
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import type { EmbeddingSpec, RerankSpec } from '../../recipe/types.js';
import { TextModel } from '../../model/onnx/index.js';
import type { LoadedModel } from '../load.js';
import type { ModelManifest } from '../manifest.js';
import { Batcher } from './batcher.js';
import type { ServerMetrics } from './metrics.js';

export type ServedKind = 'embed' | 'rerank' | 'onnx';

export interface Embedded { vector: Float32Array; tokens: number }
export interface Scored { score: number; tokens: number }

export interface ServedModel {
  id: string;
  kind: ServedKind;
  /** The Hub repo it came from (OpenAI clients may name a model so). */
  repo: string;
  /** The .onnx file opened. */
  file: string;
  inputs: readonly string[];
  outputs: readonly string[];
  /** The execution provider it runs on (cuda falls back to cpu when onnxruntime cannot load it). */
  device: string;
  embedding?: EmbeddingSpec;
  rerank?: RerankSpec;
  maxTokens: number;
  text?: TextModel;
  /** Unnormalized pooled vectors (normalization is per request). */
  embed?: Batcher<string, Embedded>;
  score?: Batcher<readonly [string, string], Scored>;
  release(): Promise<void>;
}

/** Sentence-transformers' default for a feature-extraction model that declares nothing. */
const DEFAULT_EMBEDDING: EmbeddingSpec = { pooling: 'mean', normalize: true, prefixes: {}, max_tokens: 512 };

/** How a model is served, from its manifest: declared embedder or reranker, a feature extractor, else plain ONNX. */
export function servingOf(manifest: ModelManifest): { kind: ServedKind; embedding?: EmbeddingSpec; rerank?: RerankSpec } {
  if (manifest.embedding) return { kind: 'embed', embedding: manifest.embedding };
  if (manifest.rerank) return { kind: 'rerank', rerank: manifest.rerank };
  if (manifest.task === 'feature-extraction') return { kind: 'embed', embedding: DEFAULT_EMBEDDING };
  return { kind: 'onnx' };
}

const QUANTIZED = /_(quantized|int8|uint8|fp16)\.onnx$/;

/** The file to serve: the quantized variant when the folder has one (transformers.js's names), else the float model. */
export function servedFile(manifest: ModelManifest): string | undefined {
  const onnx = manifest.files.map((f) => f.path).filter((p) => p.endsWith('.onnx')).sort();
  return onnx.find((p) => QUANTIZED.test(p)) ?? onnx.find((p) => /(^|\/)model\.onnx$/.test(p)) ?? onnx[0];
}

export interface OpenOptions {
  executionProviders: string[];
  log?: (line: string) => void;
  threads?: number;
  maxBatch: number;
  metrics: ServerMetrics;
}

/**
 * Opens with the first providers that load: ['cuda', 'cpu'] needs onnxruntime's CUDA provider libraries
 * (and a GPU); without them onnxruntime refuses the session outright, so it is opened again on cpu, said loudly.
 */
async function withFallback<T>(id: string, providers: string[], log: (l: string) => void, open: (providers: string[]) => Promise<T>): Promise<{ value: T; device: string }> {
  try {
    return { value: await open(providers), device: providers[0]! };
  } catch (err) {
    if (providers[0] !== 'cuda') throw err;
    log(`warning: ${id}: onnxruntime's cuda execution provider is not available (${(err as Error).message.split('\n')[0]!.slice(0, 300)}); running on cpu`);
    return { value: await open(['cpu']), device: 'cpu' };
  }
}

export async function openServed(m: LoadedModel, opts: OpenOptions): Promise<ServedModel | undefined> {
  const rel = servedFile(m.manifest);
  if (!rel) return undefined;
  const file = join(m.dir, rel);
  const how = servingOf(m.manifest);
  const base = { id: m.id, repo: m.manifest.source.repo, file, ...how };
  const log = opts.log ?? (() => {});
  if (how.kind === 'onnx') {
    const ort = await import('onnxruntime-node');
    const { value: session, device } = await withFallback(m.id, opts.executionProviders, log, (providers) => ort.InferenceSession.create(file, { executionProviders: providers as ort.InferenceSession.ExecutionProviderConfig[], logSeverityLevel: 3 }));
    return { ...base, device, inputs: session.inputNames, outputs: session.outputNames, maxTokens: 0, release: () => session.release() };
  }
  const { value: text, device } = await withFallback(m.id, opts.executionProviders, log, (providers) => TextModel.open(m.dir, file, { executionProviders: providers, threads: opts.threads }));
  const maxTokens = how.embedding?.max_tokens ?? how.rerank!.max_tokens;
  const onBatch = (size: number, seconds: number) => {
    opts.metrics.batchSize.observe({ model: m.id }, size);
    opts.metrics.inference.observe({ model: m.id }, seconds);
  };
  const served: ServedModel = { ...base, device, inputs: text.session.inputNames, outputs: text.session.outputNames, maxTokens, text, release: () => text.release() };
  if (how.kind === 'embed') {
    served.embed = new Batcher({
      maxBatch: opts.maxBatch,
      onBatch,
      run: async (texts) => {
        const r = await text.embed(texts, how.embedding!, false);
        return r.values.map((vector, i) => ({ vector, tokens: r.tokens[i]! }));
      },
    });
  } else {
    served.score = new Batcher({
      maxBatch: opts.maxBatch,
      onBatch,
      run: async (pairs) => {
        const r = await text.score(pairs, maxTokens);
        return r.values.map((score, i) => ({ score, tokens: r.tokens[i]! }));
      },
    });
  }
  return served;
}
