// A step is a function of content-addressed inputs; its result is cached in the store under
// key = digest(step name, step version, input digests, parameters, versions of the tools it uses).
// A present key means skip. Steps are data (StepDef); chain.ts lists them per quantize format, and the
// runner (run.ts) and the planner (plan.ts) read the same list.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Artifact, MissingBlob, Store } from '../store/store.js';
import { stepKey } from '../store/store.js';
import type { Sha256Hex } from '../util/digest.js';
import type { PipelineContext } from './context.js';
import type { EventSink, StepName } from './events.js';
import { toolVersions, type Toolchain, type ToolName } from './toolchain.js';
import { rewriteError } from '../util/errors.js';

export interface Stored {
  digest: Sha256Hex;
  artifact: Artifact;
}

export interface StepResult extends Stored {
  key: Sha256Hex;
  cached: boolean;
  /** Wall time of the run; absent for a cache hit. */
  ms?: number;
}

export interface StepIO {
  ctx: PipelineContext;
  /** The results of the steps named in `inputs`, in that order. */
  inputs: StepResult[];
  /** A fresh folder under the store, removed after the step. */
  scratch: string;
  /** A line for the user, attributed to this step and model. */
  log(message: string): void;
}

export interface StepDef {
  name: StepName;
  /** Bump when the step's code changes what it produces: old cache entries stop matching. */
  version: number;
  /** Toolchain parts whose versions shape the output (their versions enter the key). */
  tools: readonly ToolName[];
  /** Earlier steps of the chain whose artifacts this one reads, in order. */
  inputs: readonly StepName[];
  /** Everything besides the input artifacts that decides the output (JSON; part of the key). */
  params: unknown;
  /** The output's digest when it is known without running (fetch: the lock names every byte). */
  predicted?: Sha256Hex;
  run(io: StepIO): Promise<Stored>;
  /** Runs on the result whether it ran or came from the cache (verify enforces the gates here). */
  check?(result: StepResult, ctx: PipelineContext): Promise<void>;
}

export function keyOf(def: Pick<StepDef, 'name' | 'version' | 'tools' | 'params'>, inputs: Sha256Hex[], toolchain: Toolchain): Sha256Hex {
  return stepKey({ step: def.name, version: def.version, inputs, params: def.params, tools: toolVersions(toolchain, def.tools) });
}

/**
 * The cached result under `key`, if any, without running anything. A result whose bytes the store can no
 * longer give (a file it referred to in the Hugging Face cache was deleted) is not cached: `onMissing` hears why.
 */
export async function cachedResult(store: Store, key: Sha256Hex, onMissing?: (missing: MissingBlob[]) => void): Promise<StepResult | undefined> {
  const rec = await store.getStep(key);
  if (!rec) return undefined;
  const artifact = await store.getArtifact(rec.artifact);
  if (!artifact) return undefined;
  const missing = await store.missingBlobs(artifact);
  if (missing.length > 0) {
    onMissing?.(missing);
    return undefined;
  }
  return { key, digest: rec.artifact, artifact, cached: true };
}

/**
 * Runs `produce` unless `key` is cached (or `force`). `produce` gets a fresh scratch folder (removed
 * afterwards) and returns the stored artifact.
 */
export async function runStep(
  store: Store,
  step: { key: Sha256Hex; name: StepName; version: number; inputs: Sha256Hex[]; params: unknown; model?: string },
  onEvent: EventSink,
  produce: (scratch: string) => Promise<Stored>,
  opts: { force?: boolean } = {},
): Promise<StepResult> {
  const { key } = step;
  if (!opts.force) {
    const hit = await cachedResult(store, key, (missing) => onEvent({
      type: 'log',
      level: 'warning',
      step: step.name,
      model: step.model,
      message: `${missing[0]!.path}: ${missing[0]!.reason}${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''}; running ${step.name} again`,
    }));
    if (hit) {
      onEvent({ type: 'step', step: step.name, model: step.model, status: 'cached', key, artifact: hit.digest });
      return hit;
    }
  }
  onEvent({ type: 'step', step: step.name, model: step.model, status: 'running', key });
  const started = performance.now();
  await mkdir(join(store.root, 'tmp'), { recursive: true });
  const scratch = await mkdtemp(join(store.root, 'tmp', `${step.name}-`));
  try {
    const { digest, artifact } = await produce(scratch).catch((err: unknown) => {
      // Readers name the scratch copy they failed on (deleted below): name the model and the user's file.
      throw rewriteError(err, (text) => store.userPaths(text, step.model), step.model ? `model ${step.model}: ` : undefined);
    });
    await store.putStep({ key, step: step.name, version: step.version, inputs: step.inputs, params: step.params, artifact: digest });
    const ms = Math.round(performance.now() - started);
    onEvent({ type: 'step', step: step.name, model: step.model, status: 'done', key, artifact: digest, ms });
    return { key, digest, artifact, cached: false, ms };
  } finally {
    store.forgetPlaced(scratch);
    await rm(scratch, { recursive: true, force: true });
  }
}
