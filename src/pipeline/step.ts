// A step is a function of content-addressed inputs; its result is cached in the store under
// key = digest(step name, step version, input digests, parameters). A present key means skip.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Artifact, Store } from '../store/store.js';
import { stepKey } from '../store/store.js';
import type { Sha256Hex } from '../util/digest.js';
import type { EventSink, StepName } from './events.js';
import { rewriteError } from '../util/errors.js';

export interface StepDef {
  step: StepName;
  /** Bump when the step's code changes what it produces: old cache entries stop matching. */
  version: number;
  inputs: Sha256Hex[];
  params: unknown;
  model?: string;
}

export interface StepResult {
  key: Sha256Hex;
  digest: Sha256Hex;
  artifact: Artifact;
  cached: boolean;
}

export function keyOf(def: StepDef): Sha256Hex {
  return stepKey(def.step, def.version, def.inputs, def.params);
}

/** The cached result of a step, if any, without running it. */
export async function cachedStep(store: Store, def: StepDef): Promise<StepResult | undefined> {
  const key = keyOf(def);
  const rec = await store.getStep(key);
  if (!rec) return undefined;
  const artifact = await store.getArtifact(rec.artifact);
  return artifact ? { key, digest: rec.artifact, artifact, cached: true } : undefined;
}

/**
 * Runs `produce` unless the step's key is cached. `produce` gets a fresh scratch folder (removed
 * afterwards) and returns the stored artifact's digest.
 */
export async function runStep(
  store: Store,
  def: StepDef,
  onEvent: EventSink,
  produce: (scratch: string) => Promise<{ digest: Sha256Hex; artifact: Artifact }>,
  opts: { force?: boolean } = {},
): Promise<StepResult> {
  const key = keyOf(def);
  if (!opts.force) {
    const hit = await cachedStep(store, def);
    if (hit) {
      onEvent({ type: 'step', step: def.step, model: def.model, status: 'cached', key, artifact: hit.digest });
      return hit;
    }
  }
  onEvent({ type: 'step', step: def.step, model: def.model, status: 'running', key });
  const started = performance.now();
  await mkdir(join(store.root, 'tmp'), { recursive: true });
  const scratch = await mkdtemp(join(store.root, 'tmp', `${def.step}-`));
  try {
    const { digest, artifact } = await produce(scratch).catch((err: unknown) => {
      // Readers name the scratch copy they failed on (deleted below): name the model and the user's file.
      throw rewriteError(err, (text) => store.userPaths(text, def.model), def.model ? `model ${def.model}: ` : undefined);
    });
    await store.putStep({ key, step: def.step, version: def.version, inputs: def.inputs, params: def.params, artifact: digest });
    onEvent({ type: 'step', step: def.step, model: def.model, status: 'done', key, artifact: digest, ms: Math.round(performance.now() - started) });
    return { key, digest, artifact, cached: false };
  } finally {
    store.forgetPlaced(scratch);
    await rm(scratch, { recursive: true, force: true });
  }
}
