// GGUF verification in real llama.cpp (node-llama-cpp, CPU): the quantized file against its F16/F32
// source on an eval text, reporting what llama-perplexity --kl-divergence reports (PPL, mean KLD, same
// top token), the size ratio and a greedy generation smoke check, then the recipe's gates.
import { stat } from 'node:fs/promises';
import type { VerifySpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { EMBEDDING_ARCHS } from '../../convert/architectures/index.js';
import { buildReport, type GateResult, type VerifyReport } from '../gates.js';
import { DEFAULT_EVAL_TEXT } from './default-eval.js';
import { compressBase, KlAccumulator, tokenNll, type BaseLogProbs } from './metrics.js';
import { chunkLogits, evalTokens, generateGreedy, withModel } from './runner.js';

export interface VerifyGgufOptions {
  /** Eval text (contents, not a path); default: a short built-in English text. */
  evalText?: string;
  /** Chunk size in tokens (llama-perplexity -c); default: 512, halved until the text gives two chunks. */
  ctx?: number;
  /** Tokens the generation smoke check asks for (default 32). */
  generateTokens?: number;
  /** llama.cpp threads (default: 1 for models under 64 MiB, else node-llama-cpp's choice). */
  threads?: number;
}

const MIN_CTX = 16;

function chooseCtx(requested: number | undefined, nTokens: number, trainCtx: number, file: string): number {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < MIN_CTX || requested % 2 !== 0) {
      throw new InputError(`verify ctx ${requested} is not an even integer >= ${MIN_CTX}`, { field: 'verify.ctx', expected: `an even number of tokens >= ${MIN_CTX}` });
    }
    if (nTokens < 2 * requested) {
      throw new InputError(`the eval text has ${nTokens} tokens, fewer than the ${2 * requested} that two chunks of ${requested} need`, {
        field: 'verify.eval', file, hint: 'use a longer eval text or a smaller ctx',
      });
    }
    return requested;
  }
  let ctx = Math.min(512, trainCtx > 0 ? trainCtx : 512);
  ctx -= ctx % 2;
  while (ctx > MIN_CTX && nTokens < 2 * ctx) ctx = Math.max(MIN_CTX, (ctx >> 1) & ~1);
  if (nTokens < 2 * ctx) {
    throw new InputError(`the eval text has only ${nTokens} tokens; perplexity needs at least ${2 * MIN_CTX}`, {
      field: 'verify.eval', file, hint: 'use a longer eval text',
    });
  }
  return ctx;
}

function commonPrefix(a: number[], b: number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

export async function verifyGguf(
  modelId: string, sourceFile: string, quantFile: string, spec: VerifySpec, opts: VerifyGgufOptions = {},
): Promise<VerifyReport> {
  for (const key of ['data', 'decode', 'decision_threshold'] as const) {
    if (spec[key] !== undefined) throw new InputError(`verify.${key} applies to ONNX models; ${modelId} is verified in llama.cpp on text`, { field: `verify.${key}`, expected: 'verify.eval (a text file) for GGUF models', hint: `remove verify.${key}` });
  }
  const text = opts.evalText ?? DEFAULT_EVAL_TEXT;
  const nGenerate = opts.generateTokens ?? 32;

  // Pass 1, the source model: exact PPL, compressed base log-probs, greedy reference generation.
  const base = await withModel(sourceFile, async (model) => {
    const arch = (model.fileInfo.metadata as { general?: { architecture?: string } }).general?.architecture ?? '';
    if (EMBEDDING_ARCHS.includes(arch)) {
      throw new InputError(`${modelId} is a ${arch} text-embedding model: it has no next-token logits to measure perplexity on`, {
        field: `models.${modelId}.task`, expected: 'task: feature-extraction', hint: 'set task: feature-extraction on the model: verify then compares its embeddings (with onnxruntime\'s on its ONNX export, and quantized with converted)',
      });
    }
    const tokens = evalTokens(model, text);
    const ctx = chooseCtx(opts.ctx, tokens.length, model.trainContextSize, sourceFile);
    const logProbs: BaseLogProbs[] = [];
    let nll = 0;
    for await (const chunk of chunkLogits(model, tokens, ctx, opts.threads)) {
      chunk.logits.forEach((row, i) => {
        nll += tokenNll(row, chunk.targets[i]!);
        logProbs.push(compressBase(row));
      });
    }
    const prompt = tokens.slice(0, 1);
    const generation = await generateGreedy(model, prompt, nGenerate, opts.threads);
    return { tokens, ctx, logProbs, ppl: Math.exp(nll / logProbs.length), prompt, generation };
  });

  // Pass 2, the quantized model, scored against pass 1 position by position.
  const quant = await withModel(quantFile, async (model) => {
    const tokens = evalTokens(model, text);
    if (tokens.length !== base.tokens.length || tokens.some((t, i) => t !== base.tokens[i])) {
      throw new InputError(`${quantFile} tokenizes the eval text differently from ${sourceFile}`, {
        file: quantFile, expected: 'the same vocabulary as the source GGUF', hint: 'verify a quantized file against the GGUF it was quantized from',
      });
    }
    const acc = new KlAccumulator();
    let k = 0;
    for await (const chunk of chunkLogits(model, tokens, base.ctx, opts.threads)) {
      chunk.logits.forEach((row, i) => {
        const ref = base.logProbs[k++]!;
        if (row.length !== ref.q.length) {
          throw new InputError(`${quantFile} has a vocabulary of ${row.length} tokens, its source ${ref.q.length}`, { file: quantFile });
        }
        acc.add(row, ref, chunk.targets[i]!);
      });
    }
    const generation = await generateGreedy(model, base.prompt, nGenerate, opts.threads);
    return { stats: acc.result(), histogram: acc.histogram(), generation };
  });

  const [srcSize, quantSize] = await Promise.all([stat(sourceFile), stat(quantFile)]).then((s) => s.map((x) => x.size));
  const metrics: Record<string, number> = {
    ...quant.stats,
    ppl_base: base.ppl,
    ppl_ratio: quant.stats.ppl! / base.ppl,
    size_ratio: quantSize! / srcSize!,
    generation_tokens: quant.generation.tokens.length,
  };
  // Smoke check: the quantized model must generate. A model that stops at once or emits NaN logits fails here.
  const smokeMin = Math.min(1, nGenerate);
  const smoke: GateResult = {
    gate: 'generation_smoke', metric: 'generation_tokens', comparison: '>=', threshold: smokeMin,
    value: metrics.generation_tokens, passed: metrics.generation_tokens! >= smokeMin,
  };
  return buildReport(modelId, 'gguf', spec, metrics, {
    runner: 'llama.cpp (node-llama-cpp, CPU)',
    method: `llama-perplexity --kl-divergence scheme: ${Math.floor(base.tokens.length / base.ctx)} chunks of ${base.ctx} tokens, second half of each scored`,
    source: { file: sourceFile, bytes: srcSize },
    quantized: { file: quantFile, bytes: quantSize },
    eval_tokens: base.tokens.length,
    kld_histogram: quant.histogram,
    ctx: base.ctx,
    generation: {
      prompt_tokens: base.prompt,
      source: base.generation,
      quantized: quant.generation,
      common_prefix_tokens: commonPrefix(base.generation.tokens, quant.generation.tokens),
    },
  }, [smoke]);
}
