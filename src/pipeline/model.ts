// One model from lock entry to a packaged folder: fetch -> [convert] -> quantize -> verify -> package.
// Each arrow is a cached step (see step.ts); the packaged folder is what lands in /app/models/<id>/.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { dataDigest } from '../data/index.js';
import { pullAndRead, storeSnapshot, type PullEvent } from '../hub/pull.js';
import { repairSnapshot } from '../hub/repair.js';
import { localModelDir, storeLocalModel } from '../lock/local.js';
import type { LockEntry } from '../lock/types.js';
import { readEvalText } from '../recipe/eval-text.js';
import type { ModelSpec, Recipe } from '../recipe/types.js';
import type { ArtifactFile } from '../store/store.js';
import { BakeError } from '../util/errors.js';
import { prettyJson } from '../util/json.js';
import { enforceGates, type VerifyReport } from '../verify/gates.js';
import type { PipelineContext } from './context.js';
import { runStep, type StepDef, type StepResult } from './step.js';
import { quantizerFor } from './quantizers.js';

export const MANIFEST_NAME = 'manifest.json';
export const REPORT_NAME = 'verify-report.json';

export interface PreparedModel {
  id: string;
  source: StepResult;
  /** The converted full-precision file the quantized one is verified against (GGUF only). */
  reference?: StepResult;
  quantized: StepResult;
  report?: VerifyReport;
  packaged: StepResult;
}

export function fetchDef(model: ModelSpec, entry: LockEntry): StepDef {
  // Keyed by content only: the same bytes from another repo or commit are the same input.
  return { step: 'fetch', version: 1, inputs: [], params: { files: entry.files.map((f) => [f.path, f.sha256, f.size]) }, model: model.id };
}

/**
 * fetch: the locked files, verified, as a store artifact (from the Hub cache or a local folder).
 * `fillHubCache` (bake pull): when the step is cached, still make sure the HF cache holds the files.
 */
export async function fetchModel(ctx: PipelineContext, recipe: Recipe, model: ModelSpec, entry: LockEntry, opts: { fillHubCache?: boolean } = {}): Promise<StepResult> {
  const onPull = (e: PullEvent) => {
    if (e.type === 'progress' || e.type === 'done') ctx.onEvent({ type: 'progress', step: 'fetch', model: model.id, label: e.path, bytes: e.bytes ?? 0, total: e.total });
    if (e.type === 'retry') ctx.onEvent({ type: 'log', step: 'fetch', model: model.id, message: `retrying ${e.path}${e.attempt ? ` (attempt ${e.attempt})` : ''}: ${e.reason}` });
  };
  const result = await runStep(ctx.store, fetchDef(model, entry), ctx.onEvent, async () => {
    // From the Hub cache: a cached file the store finds corrupt is downloaded again (once).
    const files = entry.source === 'hub'
      ? await pullAndRead(entry, ctx.hub, { onEvent: onPull }, () => storeSnapshot(ctx.store, entry, ctx.hub))
      : await storeLocalModel(ctx.store, recipe, model, entry, ctx.root);
    return ctx.store.putArtifact({ kind: 'source', files, meta: {} });
  }, { force: ctx.force });
  // Errors of later steps on copies of these files name the user's files: the local folder or `org/name`.
  ctx.store.nameArtifact(result.digest, result.artifact, entry.source === 'hub' ? entry.repo : localModelDir(model, recipe.file, ctx.root), model.id);
  if (opts.fillHubCache && result.cached && entry.source === 'hub') await repairSnapshot(entry, ctx.hub, { onEvent: onPull });
  return result;
}

/** The whole chain for one model. Gates are enforced even when the report came from the cache. */
export async function prepareModel(ctx: PipelineContext, recipe: Recipe, model: ModelSpec, entry: LockEntry): Promise<PreparedModel> {
  const source = await fetchModel(ctx, recipe, model, entry);
  const quantizer = quantizerFor(model.quantize);
  const { quantized, reference } = await quantizer.quantize(ctx, model, source, dirname(recipe.file));

  let report: VerifyReport | undefined;
  let reportStep: StepResult | undefined;
  if (quantizer.verify && !model.verify.skip) {
    const evalText = await readEvalText(model, recipe.file);
    // Eval samples enter the key by content: changing a file re-runs verify.
    const evalData = await dataDigest(model.verify.data, { field: 'verify.data', baseDir: dirname(recipe.file) });
    const against = reference ?? source;
    reportStep = await runStep(
      ctx.store,
      { step: 'verify', version: quantizer.verifyVersion, inputs: [against.digest, quantized.digest], params: { verify: model.verify, task: model.task, evalText, ...(evalData && { evalData }) }, model: model.id },
      ctx.onEvent,
      async (scratch) => {
        const r = await quantizer.verify!(ctx, model, against, quantized, scratch, evalText, dirname(recipe.file));
        const { sha256, size } = await ctx.store.putBytes(prettyJson(r));
        return ctx.store.putArtifact({ kind: 'verify-report', files: [{ path: REPORT_NAME, sha256, size }], meta: {} });
      },
      { force: ctx.force },
    );
    // The verify step is keyed without the model id (models with the same input share it): name this one.
    report = { ...(JSON.parse(await readFile(ctx.store.blobPath(reportStep.artifact.files[0]!.sha256), 'utf8')) as VerifyReport), model: model.id };
    for (const w of report.warnings ?? []) ctx.onEvent({ type: 'log', level: 'warning', step: 'verify', model: model.id, message: w });
    enforceGates(model.id, report);
  }

  const packaged = await runStep(
    ctx.store,
    { step: 'package', version: 1, inputs: [quantized.digest, ...(reportStep ? [reportStep.digest] : [])], params: { id: model.id, entry: { ...entry, fragment: undefined } }, model: model.id },
    ctx.onEvent,
    async () => {
      const files = quantizer.packagedFiles?.(model, quantized.artifact.files) ?? quantized.artifact.files;
      const manifest = modelManifest(model, entry, quantized, report, files);
      const m = await ctx.store.putBytes(prettyJson(manifest));
      return ctx.store.putArtifact({ kind: 'model', files: [...files, { path: MANIFEST_NAME, ...m }], meta: {} });
    },
    { force: ctx.force },
  );
  return { id: model.id, source, reference, quantized, report, packaged };
}

/** /app/models/<id>/manifest.json: what shipped, where it came from, how it was made and checked. */
export function modelManifest(model: ModelSpec, entry: LockEntry, quantized: StepResult, report: VerifyReport | undefined, files = quantized.artifact.files): Record<string, unknown> {
  if (quantized.artifact.files.some((f) => f.path === MANIFEST_NAME)) {
    throw new BakeError(`model ${model.id}: the quantized output already has a ${MANIFEST_NAME}`, 'failure');
  }
  return {
    schema: 'bake.model.v1',
    id: model.id,
    task: model.task,
    source: { type: entry.source, repo: entry.repo, revision: entry.revision, commit: entry.commit, files: entry.files },
    files,
    quantization: { format: model.quantize.format, params: quantized.artifact.meta.params ?? model.quantize, kept_float: quantized.artifact.meta.keptFloat },
    verification: report ? { passed: report.passed, metrics: reproducibleMetrics(report.metrics), gates: report.gates } : { skipped: true },
  };
}

/**
 * Timings and memory vary from run to run; in the manifest they would change the model's layer digest
 * on every rebuild. They stay in the verify report (`bake verify`), not in what ships.
 */
export function reproducibleMetrics(metrics: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).filter(([k]) => !/latency|rss|_ms$|seconds|time/.test(k)));
}
