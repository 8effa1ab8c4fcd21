// AWQ verification, all on bake's forward pass: (1) the checkpoint is unpacked the way vLLM reads it and
// every quantized linear must give back exactly the dequantized weights the search produced; (2) the
// original model, the AWQ checkpoint (as unpacked) and plain round-to-nearest 4-bit of the same linears at
// the same group size run on an eval text in llama-perplexity's scheme (chunks of ctx tokens, BOS first,
// second half scored); perplexity, mean KL divergence and same-top-token are reported for AWQ and RTN.
// Gates: the recipe's (max_kld, min_same_top, max_ppl_ratio, max_size_ratio) plus max_kld_vs_rtn
// (default 1: AWQ no worse than plain rounding) and the round trip (no mismatch).
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { openLlamaCheckpoint } from '../../model/llama/config.js';
import { forwardHidden, LlamaRunner } from '../../model/llama/runner.js';
import { loadTextTokenizer } from '../../model/llama/tokenizer.js';
import { checkpointWeights, LINEARS, type LayerWeights, type Linear, type LinearName, type LlamaWeights } from '../../model/llama/weights.js';
import { awqCheckpointWeights, checkAwqCheckpoint, safetensorsBytes } from '../../quant/awq/index.js';
import { dequantize, quantizeGroups, roundToFp16 } from '../../quant/awq/kernel.js';
import { moduleName } from '../../quant/awq/plan.js';
import type { VerifySpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { buildReport, type GateResult, type VerifyReport } from '../gates.js';
import { DEFAULT_EVAL_TEXT } from '../llama/default-eval.js';
import { compressBase, KlAccumulator, tokenNll, type BaseLogProbs } from '../llama/metrics.js';

export interface VerifyAwqOptions {
  evalText?: string;
  /** Chunk size in tokens (default: 512, halved until the text gives two chunks). */
  ctx?: number;
  /** What the quantize step meant: digest of each quantized module's dequantized weights. */
  digests?: Record<string, string>;
  threads?: number;
}

const MIN_CTX = 16;

function chooseCtx(requested: number | undefined, nTokens: number): number {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < MIN_CTX || requested % 2 !== 0 || nTokens < 2 * requested) {
      throw new InputError(`verify ctx ${requested} does not fit an eval text of ${nTokens} tokens`, { field: 'verify.eval', expected: `an even ctx >= ${MIN_CTX} with two chunks in the text` });
    }
    return requested;
  }
  let ctx = 512;
  while (ctx > MIN_CTX && nTokens < 2 * ctx) ctx = Math.max(MIN_CTX, ctx >> 1);
  if (nTokens < 2 * ctx) throw new InputError(`the eval text has only ${nTokens} tokens; perplexity needs at least ${2 * MIN_CTX}`, { field: 'verify.eval', hint: 'use a longer eval text' });
  return ctx;
}

/** Round-to-nearest 4-bit of the linears the AWQ checkpoint quantized, same group size; the rest as fp16. */
export function rtnWeights(base: LlamaWeights, quantized: Set<string>, groupSize: number): LlamaWeights {
  return {
    config: base.config,
    embed: async () => roundToFp16(await base.embed()),
    finalNorm: async () => roundToFp16(await base.finalNorm()),
    lmHead: async () => roundToFp16(await base.lmHead()),
    async layer(i) {
      const l = await base.layer(i);
      const linears = {} as Record<LinearName, Linear>;
      for (const n of LINEARS) {
        const x = l.linears[n];
        const weight = quantized.has(moduleName(i, n)) ? dequantize(quantizeGroups(x.weight, x.out, x.in, groupSize)) : roundToFp16(x.weight);
        linears[n] = { ...x, weight, ...(x.bias ? { bias: roundToFp16(x.bias) } : {}) };
      }
      const out: LayerWeights = { inputNorm: roundToFp16(l.inputNorm), postNorm: roundToFp16(l.postNorm), linears };
      return out;
    },
  };
}

interface Scored {
  stats: Record<string, number>;
}

export async function verifyAwq(modelId: string, srcDir: string, quantDir: string, spec: VerifySpec, opts: VerifyAwqOptions = {}): Promise<VerifyReport> {
  for (const key of ['data', 'decode', 'decision_threshold'] as const) {
    if (spec[key] !== undefined) throw new InputError(`verify.${key} applies to ONNX models; ${modelId} is verified on text`, { field: `verify.${key}`, expected: 'verify.eval (a text file)', hint: `remove verify.${key}` });
  }
  // (1) The checkpoint as vLLM reads it, against what the search meant.
  const check = await checkAwqCheckpoint(quantDir);
  const mismatched: string[] = [];
  if (opts.digests) {
    const names = new Set([...Object.keys(opts.digests), ...Object.keys(check.digests)]);
    for (const n of [...names].sort()) if (opts.digests[n] !== check.digests[n]) mismatched.push(n);
  }
  // (2) Original, AWQ and RTN on the eval text.
  const src = await openLlamaCheckpoint(srcDir);
  const c = src.config;
  const tok = await loadTextTokenizer(srcDir);
  const text = opts.evalText ?? DEFAULT_EVAL_TEXT;
  const tokens = [...tok.prefix, ...tok.encode(text)];
  const ctx = chooseCtx(opts.ctx, tokens.length);
  const nChunk = Math.floor(tokens.length / ctx);
  const chunks = Array.from({ length: nChunk }, (_, k) => {
    const chunk = tokens.slice(k * ctx, (k + 1) * ctx);
    if (tok.prefix.length) chunk[0] = tok.prefix[0]!;
    return chunk;
  });
  const first = ctx >> 1;
  const runner = new LlamaRunner(c, { threads: opts.threads ?? Math.max(1, availableParallelism() - 1) });
  const V = c.vocabSize;
  /** Logit rows of the scored positions of every chunk, one chunk at a time. */
  const eachRow = async (w: LlamaWeights, fn: (row: Float32Array, target: number) => void): Promise<void> => {
    const hidden = await forwardHidden(runner, w, chunks);
    const norm = await w.finalNorm();
    const head = await w.lmHead();
    for (let k = 0; k < nChunk; k++) {
      const logits = await runner.logits(norm, head, hidden.subarray(k * ctx * c.nEmbd, (k + 1) * ctx * c.nEmbd), 1, ctx);
      for (let p = first; p < ctx - 1; p++) fn(logits.subarray(p * V, (p + 1) * V), tokens[k * ctx + p + 1]!);
    }
  };
  const base: BaseLogProbs[] = [];
  let nll = 0;
  const score = async (w: LlamaWeights): Promise<Scored> => {
    const acc = new KlAccumulator();
    let k = 0;
    await eachRow(w, (row, target) => acc.add(row, base[k++]!, target));
    return { stats: acc.result() };
  };
  let awq: Scored, rtn: Scored;
  const started = performance.now();
  try {
    await eachRow(checkpointWeights(src), (row, target) => {
      nll += tokenNll(row, target);
      base.push(compressBase(row));
    });
    const { weights: awqW } = await awqCheckpointWeights(quantDir);
    if (awqW.config.vocabSize !== c.vocabSize || awqW.config.nLayer !== c.nLayer || awqW.config.nEmbd !== c.nEmbd) {
      throw new InputError(`${quantDir}: its config.json describes another model than ${srcDir}`, { file: quantDir, expected: 'the AWQ checkpoint of the source model' });
    }
    awq = await score(awqW);
    rtn = await score(rtnWeights(checkpointWeights(src), new Set(Object.keys(check.digests)), check.groupSize));
  } finally {
    await runner.close();
  }
  const pplBase = Math.exp(nll / base.length);
  const kld = awq.stats.kld_mean!;
  const rtnKld = rtn.stats.kld_mean!;
  const [srcBytes, quantBytes] = [await safetensorsBytes(srcDir), await safetensorsBytes(quantDir)];
  const metrics: Record<string, number> = {
    ...awq.stats,
    ppl_base: pplBase,
    ppl_ratio: awq.stats.ppl! / pplBase,
    rtn_kld_mean: rtnKld,
    rtn_ppl: rtn.stats.ppl!,
    rtn_same_top_pct: rtn.stats.same_top_pct!,
    kld_vs_rtn: rtnKld > 0 ? kld / rtnKld : kld > 0 ? Infinity : 1,
    size_ratio: quantBytes / srcBytes,
    quantized_linears: check.quantized,
    fp16_linears: check.unquantized,
    roundtrip_mismatches: mismatched.length,
    eval_seconds: (performance.now() - started) / 1000,
  };
  const roundtrip: GateResult = {
    gate: 'checkpoint_roundtrip', metric: 'roundtrip_mismatches', comparison: '<=', threshold: 0, value: mismatched.length, passed: mismatched.length === 0,
    ...(mismatched.length ? { hint: `unpacked as vLLM reads them, ${mismatched.slice(0, 3).join(', ')} do not give back the weights AWQ produced: a packing bug, please report it` } : {}),
  };
  return buildReport(modelId, 'awq', { max_kld_vs_rtn: 1, ...spec }, metrics, {
    runner: 'bake forward pass (onnxruntime, CPU)',
    method: `llama-perplexity --kl-divergence scheme: ${nChunk} chunks of ${ctx} tokens, second half of each scored; RTN = round-to-nearest 4-bit of the same ${check.quantized} linears, group ${check.groupSize}`,
    checkpoint: { layout: check.layout, group_size: check.groupSize, quantized: check.quantized, fp16: check.unquantized, mismatched },
    tokenizer: tok.kind,
    eval_tokens: tokens.length,
    ctx,
    rtn: rtn.stats,
  }, [roundtrip], { hints: { max_kld_vs_rtn: 'AWQ came out worse than plain rounding on the eval text: calibrate on text closer to it (quantize.calibration.texts), more samples, or duo_scaling: both' } });
}

/**
 * A checkpoint a vLLM target serves as it is (`quantize: none`): when config.json declares AWQ or
 * compressed-tensors quantization, every packed linear is unpacked as vLLM reads it (a broken upload is
 * an InputError naming the tensor); an unquantized checkpoint has nothing to unpack and passes.
 */
export async function checkServedCheckpoint(modelId: string, dir: string): Promise<VerifyReport> {
  const file = join(dir, 'config.json');
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new InputError(`model ${modelId}: vLLM loads a Hugging Face folder, and config.json cannot be read (${(err as Error).message})`, {
      file, field: `models.${modelId}.files`, expected: 'config.json and the safetensors weights', hint: 'add config.json to the model\'s files: list', cause: err,
    });
  }
  const method = String((config.quantization_config as Record<string, unknown> | undefined)?.quant_method ?? '').toLowerCase();
  if (method !== 'awq' && method !== 'compressed-tensors') {
    return buildReport(modelId, 'checkpoint', {}, { quantized_linears: 0 }, { checked: method ? `quant_method ${method}: not a layout bake unpacks` : 'not quantized: nothing to unpack' });
  }
  const c = await checkAwqCheckpoint(dir);
  return buildReport(modelId, 'checkpoint', {}, { quantized_linears: c.quantized, fp16_linears: c.unquantized, group_size: c.groupSize }, {
    checked: `${c.layout}: ${c.quantized} packed linears unpacked as vLLM reads them${c.architecture ? `, every linear of the ${c.architecture} packed or listed` : ''}`,
  });
}
