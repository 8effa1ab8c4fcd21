// Executes a model's chain (chain.ts) step by step: each step's key from its definition, its input
// artifacts' digests and the toolchain; cached results are reused, the rest run and are stored.
import { GateError } from '../util/errors.js';
import type { VerifyReport } from '../verify/gates.js';
import { readReport, type Chain } from './chain.js';
import type { PipelineContext } from './context.js';
import type { StepName } from './events.js';
import { keyOf, runStep, type StepResult } from './step.js';

/** The order of stages; `until` stops a chain after the last step at or before a stage. */
export const STAGES: readonly StepName[] = ['fetch', 'convert', 'quantize', 'verify', 'package'];

export function withinStage(step: StepName, until: StepName | undefined): boolean {
  return until === undefined || STAGES.indexOf(step) <= STAGES.indexOf(until);
}

export interface StepOutcome {
  step: StepName;
  key: string;
  artifact: string;
  cached: boolean;
  /** Wall time when it ran (timings are kept apart from everything reproducible). */
  ms?: number;
}

export interface ChainRun {
  model: string;
  format: string;
  steps: StepOutcome[];
  results: Partial<Record<StepName, StepResult>>;
  /** The artifact that ships (before packaging) and the packaged folder, when those steps ran. */
  quantized?: StepResult;
  packaged?: StepResult;
  report?: VerifyReport;
  /** With `gates: 'record'`: the gate that failed; the chain stopped after verify. */
  gateFailed?: GateError;
}

export interface RunOptions {
  until?: StepName;
  /** `enforce` (default): a failed gate throws. `record`: it stops the chain and is returned (for reports). */
  gates?: 'enforce' | 'record';
}

export async function runChain(ctx: PipelineContext, chain: Chain, opts: RunOptions = {}): Promise<ChainRun> {
  const results: Partial<Record<StepName, StepResult>> = {};
  const steps: StepOutcome[] = [];
  let gateFailed: GateError | undefined;
  const model = chain.model.id;
  for (const def of chain.steps) {
    if (!withinStage(def.name, opts.until)) break;
    const inputs = def.inputs.map((n) => {
      const r = results[n];
      if (!r) throw new Error(`step ${def.name} of ${model} reads ${n}, which has not run before it`);
      return r;
    });
    const key = keyOf(def, inputs.map((i) => i.digest), ctx.toolchain);
    const log = (message: string) => ctx.onEvent({ type: 'log', step: def.name, model, message });
    const r = await runStep(ctx.store, { key, name: def.name, version: def.version, inputs: inputs.map((i) => i.digest), params: def.params, model }, ctx.onEvent, (scratch) => def.run({ ctx, inputs, scratch, log }), { force: ctx.force });
    try {
      await def.check?.(r, ctx);
    } catch (err) {
      if (!(err instanceof GateError && opts.gates === 'record')) throw err;
      gateFailed = err;
    }
    results[def.name] = r;
    steps.push({ step: def.name, key: r.key, artifact: r.digest, cached: r.cached, ...(r.ms !== undefined ? { ms: r.ms } : {}) });
    if (gateFailed) break;
  }
  return {
    model,
    format: chain.model.quantize.format,
    steps,
    results,
    quantized: results[chain.quantized],
    packaged: results.package,
    report: results.verify ? await readReport(ctx, results.verify, model) : undefined,
    ...(gateFailed ? { gateFailed } : {}),
  };
}
