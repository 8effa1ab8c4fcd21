// Runs GGUF files in real llama.cpp through node-llama-cpp's prebuilt CPU binding: loads a model,
// evaluates text in llama-perplexity's chunks, and generates greedily. Nothing here prints: llama.cpp's
// own log lines are kept and attached to errors.
import { stat } from 'node:fs/promises';
import { getLlama, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';
import { InputError } from '../../util/errors.js';

let llamaPromise: Promise<Llama> | undefined;
const recentLogs: string[] = [];

/** One llama.cpp binding per process (loading it twice wastes seconds and memory). */
export function llamaCpu(): Promise<Llama> {
  llamaPromise ??= getLlama({
    gpu: false,
    build: 'never', // offline machines: use the prebuilt binary, never try to compile
    progressLogs: false,
    logger: (level, message) => {
      if (level === 'error' || level === 'warn') {
        recentLogs.push(message.trim());
        if (recentLogs.length > 20) recentLogs.shift();
      }
    },
  }).catch((err: unknown) => {
    llamaPromise = undefined;
    throw err;
  });
  return llamaPromise;
}

/** Loads `file`, runs `fn`, and always frees the model. */
export async function withModel<T>(file: string, fn: (model: LlamaModel) => Promise<T>): Promise<T> {
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new Error('not a file');
  } catch (cause) {
    throw new InputError(`GGUF file ${file} does not exist or is not a file`, { file, cause, hint: 'check the path the quantize step wrote' });
  }
  const llama = await llamaCpu();
  let model: LlamaModel;
  try {
    model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  } catch (cause) {
    throw new InputError(`llama.cpp could not load ${file}: ${(cause as Error).message}${recentLogs.length ? ` (${recentLogs.slice(-3).join('; ')})` : ''}`, {
      file,
      cause,
      expected: 'a GGUF model file llama.cpp supports',
    });
  }
  try {
    return await fn(model);
  } finally {
    await model.dispose();
  }
}

/**
 * Small models run on one thread: their matmuls are too short to share, and ggml's spinning thread
 * barriers turn a busy machine into a 20-50x slowdown (measured: 128 tokens of stories260K took 4.5 s on
 * 2 threads under load, 0.15 s on 1). Larger models get node-llama-cpp's default.
 */
function threadsFor(model: LlamaModel): number | undefined {
  return model.size < 64 * 1024 * 1024 ? 1 : undefined;
}

/** Tokens exactly as llama-perplexity builds them: BOS (if the vocabulary adds one) + the text. */
export function evalTokens(model: LlamaModel, text: string): number[] {
  const tokens = model.tokenize(text, false).map(Number);
  const bos = model.tokens.bos;
  return model.tokens.shouldPrependBosToken && bos !== null ? [Number(bos), ...tokens] : tokens;
}

export interface ScoredChunk {
  /** Logits for positions first..ctx-2 of the chunk, each predicting the token after it. */
  logits: Float32Array[];
  /** The token each row predicts. */
  targets: number[];
}

/**
 * Logit values node-llama-cpp may hand back at once: each comes as a Map entry (about 60 bytes), so a
 * whole 512-token chunk of a 128k-vocabulary model would need gigabytes. Above this, a chunk's scored
 * positions are evaluated in groups (the KV cache carries the context between them).
 */
const LOGIT_BUDGET = 1 << 20;

/**
 * llama-perplexity's scheme: the tokens are cut into chunks of `ctx`, each evaluated from an empty KV
 * cache with its first token replaced by BOS, and only the second half of each chunk is scored (so every
 * scored token has at least ctx/2 tokens of context).
 */
export async function* chunkLogits(
  model: LlamaModel, tokens: number[], ctx: number, threads?: number, logitBudget = LOGIT_BUDGET,
): AsyncGenerator<ScoredChunk> {
  const nChunk = Math.floor(tokens.length / ctx);
  const first = ctx >> 1;
  const bos = model.tokens.bos;
  const vocab = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly string[] } } }).tokenizer?.ggml?.tokens?.length ?? 32000;
  // Small vocabularies: the whole chunk in one batch, exactly like llama-perplexity.
  const group = Math.max(1, Math.floor(logitBudget / vocab));
  const context = await model.createContext({ contextSize: ctx, batchSize: ctx, sequences: 1, threads: threads ?? threadsFor(model) });
  try {
    const seq = context.getSequence();
    for (let c = 0; c < nChunk; c++) {
      await seq.clearHistory();
      const chunk = tokens.slice(c * ctx, (c + 1) * ctx);
      if (model.tokens.shouldPrependBosToken && bos !== null) chunk[0] = Number(bos);
      const logits: Float32Array[] = [];
      const targets: number[] = [];
      // Evaluate [from, to): positions >= first (and < ctx - 1) ask for their next-token logits.
      for (let from = 0; from < ctx; ) {
        const to = from === 0 && group >= ctx - 1 - first ? ctx : Math.min(ctx - 1, Math.max(from, first) + group);
        const input = chunk.slice(from, to).map((t, k) =>
          from + k >= first && from + k < ctx - 1 ? ([t as Token, { generateNext: { logits: true } }] as const) : (t as Token),
        );
        const out = await seq.controlledEvaluate(input as Parameters<typeof seq.controlledEvaluate>[0]);
        for (let pos = Math.max(from, first); pos < Math.min(to, ctx - 1); pos++) {
          const map = out[pos - from]?.next.logits;
          if (!map) throw new Error(`node-llama-cpp returned no logits for position ${pos} of chunk ${c}`);
          const row = new Float32Array(map.size);
          for (const [tok, v] of map) {
            if (tok >= row.length) throw new Error(`logit for token ${tok} outside the vocabulary of ${row.length}`);
            row[tok] = v;
          }
          logits.push(row);
          targets.push(tokens[c * ctx + pos + 1]!);
        }
        from = to === ctx - 1 ? ctx : to; // the last token predicts nothing that is scored
      }
      yield { logits, targets };
    }
  } finally {
    await context.dispose();
  }
}

/** Greedy generation of up to `maxTokens` after `prompt` (stops at end-of-generation tokens). */
export async function generateGreedy(model: LlamaModel, prompt: number[], maxTokens: number, threads?: number): Promise<{ tokens: number[]; text: string }> {
  const context = await model.createContext({ contextSize: Math.max(64, prompt.length + maxTokens + 8), sequences: 1, threads: threads ?? threadsFor(model) });
  try {
    const seq = context.getSequence();
    const out: number[] = [];
    if (maxTokens > 0) {
      for await (const tok of seq.evaluate(prompt as Token[], { temperature: 0 })) {
        if (model.isEogToken(tok)) break;
        out.push(Number(tok));
        if (out.length >= maxTokens) break;
      }
    }
    return { tokens: out, text: model.detokenize(out as Token[]) };
  } finally {
    await context.dispose();
  }
}
