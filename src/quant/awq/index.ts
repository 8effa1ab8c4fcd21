// AWQ 4-bit quantization of a LLaMA-family safetensors checkpoint, on CPU, block by block: calibration
// text through the model's tokenizer, each block searched and quantized on the outputs of the blocks
// before it, written as a checkpoint vLLM loads (AutoAWQ GEMM or compressed-tensors pack-quantized).
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../formats/safetensors/index.js';
import { openLlamaCheckpoint } from '../../model/llama/config.js';
import { embedTokens, LlamaRunner } from '../../model/llama/runner.js';
import { loadTextTokenizer } from '../../model/llama/tokenizer.js';
import { checkpointWeights, LINEARS } from '../../model/llama/weights.js';
import type { Sha256Hex } from '../../util/digest.js';
import type { AwqQuantSpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { prettyJson } from '../../util/json.js';
import { builtinCalibration, calibrationSamples, DEFAULT_LENGTH, DEFAULT_SAMPLES, type CalibrationText } from './calibration.js';
import { copyCompanionFiles, globalTensors, layerTensors, quantizationConfig, weightDigest, type CheckpointLayout } from './checkpoint.js';
import { dequantize } from './kernel.js';
import { isQuantized, moduleName, planAwq, type AwqPlan } from './plan.js';
import { AwqBlockSearch, type ScaleChoice } from './search.js';

export { builtinCalibration, calibrationText, BUILTIN_CALIBRATION, DEFAULT_LENGTH, DEFAULT_SAMPLES } from './calibration.js';
export { checkAwqCheckpoint, awqCheckpointWeights, openAwqCheckpoint, safetensorsBytes, type CheckpointLayout } from './checkpoint.js';
export { planAwq, type AwqPlan } from './plan.js';
export type { AwqQuantSpec } from '../../recipe/types.js';

export type AwqEvent = { type: 'log'; message: string } | { type: 'warning'; message: string };

export interface AwqOptions {
  modelId?: string;
  /** Calibration text (the recipe's file, read); default: the built-in set. */
  calibration?: CalibrationText;
  onEvent?: (e: AwqEvent) => void;
}

export interface AwqResult {
  layout: CheckpointLayout;
  plan: AwqPlan;
  /** What shaped the output (stored in the manifest). */
  params: Record<string, unknown>;
  /** Per quantized module: digest of its dequantized weights (what unpacking must give back). */
  digests: Record<string, Sha256Hex>;
  scales: { layer: number; choices: ScaleChoice[] }[];
  warnings: string[];
  calibrationTokens: number;
  files: string[];
}

export function resolvedSpec(spec: AwqQuantSpec): Required<Omit<AwqQuantSpec, 'calibration' | 'threads'>> & { samples: number; length: number } {
  return {
    format: 'awq', checkpoint: spec.checkpoint ?? 'autoawq-gemm', group_size: spec.group_size ?? 128, bits: 4, zero_point: true,
    shape_rule: spec.shape_rule ?? 'smaller-group', fp16_fallback: spec.fp16_fallback ?? true, duo_scaling: spec.duo_scaling ?? 'both',
    clip: spec.clip ?? true, propagate: spec.propagate ?? 'quantized',
    samples: spec.calibration?.samples ?? DEFAULT_SAMPLES, length: spec.calibration?.length ?? DEFAULT_LENGTH,
  };
}

export async function quantizeAwq(srcDir: string, outDir: string, spec: AwqQuantSpec, opts: AwqOptions = {}): Promise<AwqResult> {
  const log = (message: string) => opts.onEvent?.({ type: 'log', message });
  const r = resolvedSpec(spec);
  if ((spec.bits ?? 4) !== 4 || (spec.zero_point ?? true) !== true) {
    throw new InputError(`${opts.modelId ? `model ${opts.modelId}: ` : ''}AWQ here is 4-bit with zero points (what both checkpoint layouts and vLLM's AWQ kernels take)`, { field: 'quantize.bits', expected: 'bits: 4, zero_point: true' });
  }
  const ck = await openLlamaCheckpoint(srcDir);
  const c = ck.config;
  const plan = planAwq(c, { groupSize: r.group_size, shapeRule: r.shape_rule, fp16Fallback: r.fp16_fallback, field: 'quantize', model: opts.modelId });
  for (const n of plan.notes) log(n);
  const tok = await loadTextTokenizer(srcDir);
  const set = opts.calibration ?? (await builtinCalibration());
  const cal = calibrationSamples(tok, set, r.samples, r.length, { model: opts.modelId, field: 'quantize.calibration' });
  const warnings = [...cal.warnings];
  for (const w of warnings) opts.onEvent?.({ type: 'warning', message: w });
  const batch = cal.tokens.length;
  const length = cal.tokens[0]!.length;
  if (c.slidingWindow !== undefined && length > c.slidingWindow) {
    throw new InputError(`calibration.length ${length} exceeds the model's sliding window ${c.slidingWindow}`, { field: 'quantize.calibration.length', expected: `at most ${c.slidingWindow}` });
  }
  log(`calibrating on ${batch} samples of ${length} tokens (${set.name}, ${tok.kind}); group size ${plan.groupSize}, ${r.checkpoint}`);

  const runner = new LlamaRunner(c, { threads: spec.threads ?? Math.max(1, availableParallelism() - 1) });
  const search = new AwqBlockSearch(runner, { groupSize: plan.groupSize, duoScaling: r.duo_scaling, clip: r.clip, propagate: r.propagate });
  const weights = checkpointWeights(ck);
  const tensors: TensorToWrite[] = globalTensors(ck.checkpoint, c);
  const digests: Record<string, Sha256Hex> = {};
  const scales: AwqResult['scales'] = [];
  try {
    let hidden = embedTokens(await weights.embed(), c, cal.tokens);
    for (let l = 0; l < c.nLayer; l++) {
      const started = performance.now();
      const res = await search.run(await weights.layer(l), hidden, batch, length, (n) => isQuantized(plan, l, n), c.nHeadKv === c.nHead);
      tensors.push(...layerTensors(r.checkpoint, l, res.shipped, res.quantized, c));
      for (const n of LINEARS) {
        const ql = res.quantized[n];
        if (ql) digests[moduleName(l, n)] = weightDigest(dequantize(ql));
      }
      scales.push({ layer: l, choices: res.scales });
      hidden = res.next;
      log(`layer ${l + 1}/${c.nLayer}: ${res.scales.map((s) => (s.skipped ? `${s.group}: skipped` : `${s.group}: alpha ${s.alpha}${s.duo ? '' : ' (x only)'}`)).join('; ')} (${Math.round(performance.now() - started)} ms)`);
    }
  } finally {
    await runner.close();
  }

  await mkdir(outDir, { recursive: true });
  await writeSafetensors(join(outDir, 'model.safetensors'), tensors, { format: 'pt' });
  const config = { ...ck.raw, torch_dtype: 'float16', quantization_config: quantizationConfig(r.checkpoint, plan) };
  await writeFile(join(outDir, 'config.json'), prettyJson(config));
  const copied = await copyCompanionFiles(srcDir, outDir);
  const params = {
    format: 'awq', checkpoint: r.checkpoint, bits: 4, zero_point: true, group_size: plan.groupSize, requested_group_size: r.group_size,
    shape_rule: r.shape_rule, duo_scaling: r.duo_scaling, clip: r.clip, propagate: r.propagate,
    calibration: { set: set.name, sha256: set.sha256, samples: batch, length, tokenizer: tok.kind },
    kept_fp16: plan.kept, notes: plan.notes,
  };
  return { layout: r.checkpoint, plan, params, digests, scales, warnings, calibrationTokens: batch * length, files: ['model.safetensors', 'config.json', ...copied] };
}
