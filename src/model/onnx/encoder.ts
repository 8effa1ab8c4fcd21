// A text model as a whole: the model folder's own tokenizer (transformers.js, offline) and an onnxruntime
// session, turning batches of texts into pooled sentence embeddings or (query, passage) pairs into one
// score each. Verification (src/verify/onnx) and the serving runtime (src/runtime/onnx) both run models
// through this, so what is verified is what is served.
import * as ort from 'onnxruntime-node';
import type { EmbeddingSpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { loadTokenizer } from './text.js';

/** What a tokenizer call returns (transformers.js Tensors: int64 data, [batch, tokens]). */
interface Encoded { [k: string]: { data: ArrayLike<bigint | number>; dims: number[] } }
interface TokenizeOptions { text_pair?: string | string[]; padding?: boolean; truncation?: boolean; max_length?: number; add_special_tokens?: boolean }
type TokenizerFn = ((text: string | string[], opts?: TokenizeOptions) => Encoded) & { model_max_length?: number };

/** Too many tokens for a request that asked not to truncate. */
export class TooManyTokensError extends InputError {
  constructor(readonly index: number, readonly tokens: number, readonly max: number) {
    super(`input ${index} has ${tokens} tokens, more than the model's ${max}`, { field: 'inputs', expected: `at most ${max} tokens per input`, hint: 'send shorter texts, or ask the server to truncate ("truncate": true)' });
  }
}

export interface SessionOptions {
  executionProviders?: string[];
  /** Intra-op threads (default: onnxruntime's choice, all cores). */
  threads?: number;
}

/** A batch run's output with the number of tokens each input took (special tokens included). */
export interface Batch<T> { values: T[]; tokens: number[] }

export class TextModel {
  private constructor(
    readonly session: ort.InferenceSession,
    private readonly tokenizer: TokenizerFn,
    readonly file: string,
  ) {}

  /** Opens `file` (an .onnx of the folder `dir`) with the folder's tokenizer. */
  static async open(dir: string, file: string, opts: SessionOptions = {}): Promise<TextModel> {
    const tokenizer = (await loadTokenizer(dir)) as unknown as TokenizerFn;
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, {
        executionProviders: (opts.executionProviders ?? ['cpu']) as ort.InferenceSession.ExecutionProviderConfig[],
        logSeverityLevel: 3,
        ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
      });
    } catch (err) {
      throw new InputError(`onnxruntime cannot load ${file}: ${(err as Error).message}`, { file, expected: 'a model onnxruntime-node can load', cause: err });
    }
    if (!session.inputNames.includes('input_ids')) {
      await session.release();
      throw new InputError(`${file} takes no input_ids: not a text model (inputs: ${session.inputNames.join(', ')})`, { file, expected: 'a text model with input_ids and attention_mask inputs' });
    }
    return new TextModel(session, tokenizer, file);
  }

  /**
   * Token counts of `texts` (or pairs) without truncation; throws TooManyTokensError for the first
   * that exceeds `max` when `truncate` is false.
   */
  count(texts: string[], pairs: string[] | undefined, max: number, truncate: boolean): number[] {
    const counts = texts.map((t, i) => this.tokenizer(t, { ...(pairs ? { text_pair: pairs[i]! } : {}), truncation: false }).input_ids!.dims.at(-1)!);
    if (!truncate) counts.forEach((n, i) => { if (n > max) throw new TooManyTokensError(i, n, max); });
    return counts.map((n) => Math.min(n, max));
  }

  /** Feeds for a batch: padded to the longest, truncated to `max` tokens. */
  private feeds(texts: string[], pairs: string[] | undefined, max: number): { feeds: Record<string, ort.Tensor>; mask: ArrayLike<bigint | number>; dims: number[] } {
    const enc = this.tokenizer(texts, { ...(pairs ? { text_pair: pairs } : {}), padding: true, truncation: true, max_length: max });
    const ids = enc.input_ids!;
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of this.session.inputNames) {
      const src = enc[name];
      if (!src && name !== 'token_type_ids') throw new InputError(`${this.file}: input ${name} is not something the tokenizer gives`, { expected: 'input_ids, attention_mask, token_type_ids' });
      const data = src ? BigInt64Array.from(src.data as ArrayLike<bigint>, (x) => BigInt(x)) : new BigInt64Array(ids.data.length);
      feeds[name] = new ort.Tensor('int64', data, ids.dims);
    }
    return { feeds, mask: enc.attention_mask!.data, dims: ids.dims };
  }

  /** Pooled (and by default L2-normalized) embeddings of `texts`, one batch. */
  async embed(texts: string[], spec: Pick<EmbeddingSpec, 'pooling' | 'normalize' | 'output' | 'max_tokens'>, normalize = spec.normalize): Promise<Batch<Float32Array>> {
    const { feeds, mask, dims } = this.feeds(texts, undefined, spec.max_tokens);
    const out = await this.session.run(feeds);
    const name = spec.output ?? (this.session.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : this.session.outputNames.find((n) => out[n]?.dims.length === 3));
    const states = name ? out[name] : undefined;
    if (!states || states.dims.length !== 3 || states.type !== 'float32') {
      throw new InputError(`${this.file}: no [batch, tokens, hidden] float output to pool (outputs: ${this.session.outputNames.join(', ')})`, { field: 'embedding.output', expected: 'the name of the token-states output' });
    }
    const [batch, tokens, hidden] = states.dims.map(Number) as [number, number, number];
    const data = states.data as Float32Array;
    const values: Float32Array[] = [];
    const counts: number[] = [];
    for (let b = 0; b < batch; b++) {
      const v = new Float32Array(hidden);
      let n = 0;
      if (spec.pooling === 'cls') {
        v.set(data.subarray(b * tokens * hidden, b * tokens * hidden + hidden));
        for (let t = 0; t < dims[1]!; t++) n += Number(mask[b * dims[1]! + t]);
      } else {
        for (let t = 0; t < tokens; t++) {
          if (!Number(mask[b * tokens + t])) continue;
          n++;
          const row = data.subarray((b * tokens + t) * hidden, (b * tokens + t + 1) * hidden);
          for (let i = 0; i < hidden; i++) v[i]! += row[i]!;
        }
        for (let i = 0; i < hidden; i++) v[i]! /= Math.max(1, n);
      }
      if (normalize) l2normalize(v);
      values.push(v);
      counts.push(n);
    }
    return { values, tokens: counts };
  }

  /** One raw logit per (query, passage) pair, one batch. */
  async score(pairs: readonly (readonly [string, string])[], maxTokens: number): Promise<Batch<number>> {
    const passages = pairs.map((p) => p[1]);
    const { feeds, mask, dims } = this.feeds(pairs.map((p) => p[0]), passages, maxTokens);
    const out = await this.session.run(feeds);
    const logits = out[this.session.outputNames.includes('logits') ? 'logits' : this.session.outputNames[0]!]!;
    const per = (logits.data as Float32Array).length / passages.length;
    if (logits.type !== 'float32' || per !== 1) {
      throw new InputError(`${this.file}: a reranker gives one score per pair; its output ${this.session.outputNames[0]} has ${per} per pair`, { field: 'rerank', expected: 'a [batch, 1] logits output' });
    }
    const tokens = passages.map((_, b) => {
      let n = 0;
      for (let t = 0; t < dims[1]!; t++) n += Number(mask[b * dims[1]! + t]);
      return n;
    });
    return { values: Array.from(logits.data as Float32Array), tokens };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

export function l2normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  const n = Math.sqrt(s);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i]! /= n;
  return v;
}

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
