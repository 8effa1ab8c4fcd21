// `bake plan`: which steps would run for each model and why, read from the cache state alone.
import type { LockEntry } from '../lock/types.js';
import type { Recipe } from '../recipe/types.js';
import type { PipelineContext } from './context.js';
import { fetchDef } from './model.js';
import { cachedStep, keyOf, type StepDef } from './step.js';
import { ggufConvertDef, quantizerFor } from './quantizers.js';

export interface PlannedStep {
  model: string;
  step: string;
  action: 'cached' | 'run';
  reason: string;
  key?: string;
}

export async function planRecipe(ctx: PipelineContext, recipe: Recipe, entries: Map<string, LockEntry>): Promise<PlannedStep[]> {
  const out: PlannedStep[] = [];
  for (const model of recipe.models) {
    const entry = entries.get(model.id)!;
    const fetch = fetchDef(model, entry);
    const hit = await cachedStep(ctx.store, fetch);
    out.push(hit ? { model: model.id, step: 'fetch', action: 'cached', reason: `files ${entry.commit.slice(0, 12)} already in the store`, key: keyOf(fetch) } : { model: model.id, step: 'fetch', action: 'run', reason: `locked files of ${entry.repo}@${entry.commit.slice(0, 12)} not in the store`, key: keyOf(fetch) });
    const quantizer = quantizerFor(model.quantize);
    if (!hit) {
      // Downstream keys depend on the fetched artifact's digest: they run because their input is new.
      out.push({ model: model.id, step: 'quantize', action: 'run', reason: 'its input (fetch) runs' });
      if (quantizer.verify && !model.verify.skip) out.push({ model: model.id, step: 'verify', action: 'run', reason: 'its input (quantize) runs' });
      out.push({ model: model.id, step: 'package', action: 'run', reason: 'its inputs run' });
      continue;
    }
    const steps = await quantizeChain(ctx, model, hit.digest);
    out.push(...steps.map((s) => ({ ...s, model: model.id })));
  }
  return out;
}

/** Follows quantize (and convert) keys as far as the cache knows them. */
async function quantizeChain(ctx: PipelineContext, model: Recipe['models'][number], sourceDigest: string): Promise<Omit<PlannedStep, 'model'>[]> {
  const fmt = model.quantize.format;
  const defs: StepDef[] = [];
  if (fmt === 'none') return [{ step: 'quantize', action: 'cached', reason: 'format none: the fetched files ship as they are' }];
  if (fmt === 'gguf') {
    defs.push(ggufConvertDef(model, sourceDigest));
  } else {
    defs.push({ step: 'quantize', version: quantizerFor(model.quantize).version, inputs: [sourceDigest], params: { spec: model.quantize, task: model.task } });
  }
  const out: Omit<PlannedStep, 'model'>[] = [];
  let input = sourceDigest;
  for (const def of defs) {
    const hit = await cachedStep(ctx.store, { ...def, inputs: [input] });
    if (!hit) {
      out.push({ step: def.step, action: 'run', reason: `no cached result for key ${keyOf(def).slice(0, 12)} (new parameters or input)`, key: keyOf(def) });
      out.push({ step: 'verify', action: 'run', reason: 'its input runs' }, { step: 'package', action: 'run', reason: 'its inputs run' });
      return out;
    }
    out.push({ step: def.step, action: 'cached', reason: 'same input and parameters as a previous run', key: keyOf(def) });
    input = hit.digest;
  }
  out.push({ step: 'verify', action: 'run', reason: 'verify and package are checked when they run (cheap when cached)' });
  return out;
}
