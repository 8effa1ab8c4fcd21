// `bake plan`: walks the same chain the runner executes against the store, computing the same keys.
// A step whose inputs are all known (cached, or predictable like fetch) has a known key; a step
// downstream of one that must run gets its key only when that input exists.
import type { Chain } from './chain.js';
import type { PipelineContext } from './context.js';
import type { StepName } from './events.js';
import { withinStage } from './run.js';
import { cachedResult, keyOf } from './step.js';

export interface PlannedStep {
  model: string;
  step: StepName;
  action: 'cached' | 'run';
  reason: string;
  /** The key the run will use; absent when it depends on the output of a step that must run first. */
  key?: string;
}

export async function planChain(ctx: PipelineContext, chain: Chain, opts: { until?: StepName } = {}): Promise<PlannedStep[]> {
  const model = chain.model.id;
  // Output digest of each step as far as it is known before running anything.
  const digests = new Map<StepName, string | undefined>();
  const out: PlannedStep[] = [];
  for (const def of chain.steps) {
    if (!withinStage(def.name, opts.until)) break;
    const unknown = def.inputs.filter((n) => digests.get(n) === undefined);
    if (unknown.length) {
      digests.set(def.name, def.predicted);
      out.push({ model, step: def.name, action: 'run', reason: `its input (${unknown.join(', ')}) runs first` });
      continue;
    }
    const key = keyOf(def, def.inputs.map((n) => digests.get(n)!), ctx.toolchain);
    const hit = ctx.force ? undefined : await cachedResult(ctx.store, key);
    if (hit) {
      digests.set(def.name, hit.digest);
      out.push({ model, step: def.name, action: 'cached', reason: 'same inputs, parameters and tools as a previous run', key });
    } else {
      digests.set(def.name, def.predicted);
      const why = ctx.force ? '--force' : def.inputs.length ? 'no cached result for these inputs, parameters and tools' : 'the locked files are not in the store';
      out.push({ model, step: def.name, action: 'run', reason: why, key });
    }
  }
  return out;
}
