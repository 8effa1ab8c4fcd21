// bake's pipeline as functions the CLI (or any program) calls: each takes a context and a recipe and
// returns a typed result (per model: step keys, cache hits, timings, verify report; per target: image
// digest, tags, size, layer digests). Nothing here prints; progress goes out as events.
import { mkdir, rm, utimes } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import PQueue from 'p-queue';
import { repairSnapshot } from '../hub/repair.js';
import { frozenEntries, lockfilePath, serializeLockfile, writeLockfile } from '../lock/lockfile.js';
import { lockRecipe, type LockChange } from '../lock/lock.js';
import type { LockEntry } from '../lock/types.js';
import { selectTargets } from '../recipe/targets.js';
import type { ModelSpec, Recipe, TargetSpec } from '../recipe/types.js';
import { listTree } from '../store/store.js';
import { sha256Bytes } from '../util/digest.js';
import { InputError } from '../util/errors.js';
import { canonicalJson } from '../util/json.js';
import type { PushResult } from '../image/oci/index.js';
import type { VerifyReport } from '../verify/gates.js';
import { buildReport, gateAnnotations, type BakeReport, type ModelInput } from '../report/model.js';
import type { ReferrerPush } from '../image/registry/referrers.js';
import { bakeVersion } from '../util/version.js';
import { assembleImage, type BakedImage, type ImageLayerInfo } from './bake.js';
import { chainFor, hubEvents, type Chain } from './chain.js';
import type { PipelineContext } from './context.js';
import type { StepName } from './events.js';
import { planChain, type PlannedStep } from './plan.js';
import { runChain, type ChainRun, type RunOptions, type StepOutcome } from './run.js';

/** A model's run: what the report reads (ModelInput), with the steps' full outcomes. */
export interface ModelResult extends Omit<ModelInput, 'steps'> {
  steps: StepOutcome[];
  /** Digest of the last artifact produced (the packaged folder after a full run). */
  artifact?: string;
}

/** The recipe's models, or the ones named (each must exist). */
export function selectModels(recipe: Recipe, ids: readonly string[] | undefined): ModelSpec[] {
  for (const id of ids ?? []) {
    if (!recipe.models.some((m) => m.id === id)) {
      throw new InputError(`--model ${id}: recipe ${recipe.name} has no such model`, { file: recipe.file, field: '--model', expected: recipe.models.map((m) => m.id).join(', ') });
    }
  }
  return ids?.length ? recipe.models.filter((m) => ids.includes(m.id)) : recipe.models;
}

/** Every selected model's chain, from the frozen lock (a stale lock is an error naming the fix). */
export async function chainsOf(ctx: PipelineContext, recipe: Recipe, models: ModelSpec[]): Promise<Chain[]> {
  const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
  return Promise.all(models.map((model) => chainFor({ ctx, recipe, model, entry: entries.get(model.id)! })));
}

/** The calibration and eval data a chain's steps are keyed by, as digests (the texts themselves stay out). */
function dataInputs(chain: Chain): NonNullable<ModelResult['inputs']> {
  const params = (name: StepName) => chain.steps.find((s) => s.name === name)?.params as Record<string, unknown> | undefined;
  const q = params('quantize') ?? {};
  const v = params('verify') ?? {};
  const text = (t: unknown) => sha256Bytes(canonicalJson(t));
  const out: NonNullable<ModelResult['inputs']> = [];
  if (q.calibrationTexts !== undefined) out.push({ role: 'calibration', kind: 'texts', sha256: text(q.calibrationTexts) });
  if (typeof q.calibrationData === 'string') out.push({ role: 'calibration', kind: 'data', sha256: q.calibrationData });
  if (typeof v.evalText === 'string') out.push({ role: 'eval', kind: 'text', sha256: sha256Bytes(v.evalText) });
  if (typeof v.evalData === 'string') out.push({ role: 'eval', kind: 'data', sha256: v.evalData });
  return out;
}

function summarize(run: ChainRun, chain: Chain): ModelResult {
  const entry = chain.entry;
  const last = run.packaged ?? run.quantized ?? run.results[run.steps[run.steps.length - 1]?.step ?? 'fetch'];
  const meta = run.quantized?.artifact.meta as ModelResult['quantization'] | undefined;
  const inputs = dataInputs(chain);
  return {
    id: run.model,
    format: run.format,
    steps: run.steps,
    artifact: last?.digest,
    sourceBytes: entry.files.reduce((a, f) => a + f.size, 0),
    ...(run.quantized ? { quantizedBytes: run.quantized.artifact.files.reduce((a, f) => a + f.size, 0), files: run.quantized.artifact.files.map((f) => f.path) } : {}),
    ...(run.report ? { report: run.report } : {}),
    ...(meta && run.quantized !== run.results.fetch ? { quantization: { params: meta.params, keptFloat: meta.keptFloat, kept: meta.kept } } : {}),
    ...(inputs.length ? { inputs } : {}),
    ...(run.gateFailed ? { gateFailed: true } : {}),
  };
}

/** Runs the chains up to `until`, two models at a time (quantizing is CPU-bound). */
async function runModels(ctx: PipelineContext, recipe: Recipe, models: ModelSpec[], until: StepName, gates: RunOptions['gates'] = 'enforce'): Promise<{ runs: ChainRun[]; results: ModelResult[] }> {
  const chains = await chainsOf(ctx, recipe, models);
  const queue = new PQueue({ concurrency: 2 });
  const runs = await Promise.all(chains.map((c) => queue.add(() => runChain(ctx, c, { until, gates }))));
  return { runs, results: runs.map((r, i) => summarize(r, chains[i]!)) };
}

export async function lockModels(ctx: PipelineContext, recipe: Recipe, opts: { update?: string[]; check?: boolean } = {}): Promise<{ lockfile: string; written: boolean; changes: LockChange[] }> {
  const { lock, changes } = await lockRecipe(recipe, ctx.lock, ctx.hub, { update: opts.update, root: ctx.root });
  const file = lockfilePath(ctx.root);
  const changed = serializeLockfile(lock) !== serializeLockfile(ctx.lock);
  if (opts.check && changed) throw new InputError(`${file} is not up to date with recipe ${recipe.name}`, { file, hint: `run \`bake lock ${recipe.name}\` and commit models.lock` });
  if (changed && !opts.check) await writeLockfile(lock, file);
  return { lockfile: file, written: changed && !opts.check, changes };
}

/** Fetches the locked files; a pull also leaves the Hugging Face cache complete (repairing it when the store already had them). */
export async function pullModels(ctx: PipelineContext, recipe: Recipe, opts: { models?: string[] } = {}): Promise<{ models: ModelResult[] }> {
  const { runs, results } = await runModels(ctx, recipe, selectModels(recipe, opts.models), 'fetch');
  const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
  for (const run of runs) {
    const entry = entries.get(run.model)!;
    if (entry.source === 'hub' && run.results.fetch?.cached) await repairSnapshot(entry, ctx.hub, { onEvent: hubEvents(ctx, run.model) });
  }
  return { models: results };
}

export async function quantizeModels(ctx: PipelineContext, recipe: Recipe, opts: { models?: string[] } = {}): Promise<{ models: ModelResult[] }> {
  return { models: (await runModels(ctx, recipe, selectModels(recipe, opts.models), 'quantize')).results };
}

export async function verifyModels(ctx: PipelineContext, recipe: Recipe, opts: { models?: string[] } = {}): Promise<{ models: ModelResult[] }> {
  return { models: (await runModels(ctx, recipe, selectModels(recipe, opts.models), 'verify')).results };
}

export async function planModels(ctx: PipelineContext, recipe: Recipe, opts: { models?: string[]; until?: StepName } = {}): Promise<{ recipe: string; steps: PlannedStep[] }> {
  const chains = await chainsOf(ctx, recipe, selectModels(recipe, opts.models));
  const steps: PlannedStep[] = [];
  for (const c of chains) steps.push(...(await planChain(ctx, c, { until: opts.until ?? 'package' })));
  return { recipe: recipe.name, steps };
}

/** Writes /out/<id>/ for each model: the packaged files with fixed times (the Dockerfile models stage). */
export async function materializeModels(ctx: PipelineContext, recipe: Recipe, opts: { models?: string[]; out: string }): Promise<{ models: (ModelResult & { dir: string })[] }> {
  const { runs, results } = await runModels(ctx, recipe, selectModels(recipe, opts.models), 'package');
  const out = [];
  for (const [i, run] of runs.entries()) {
    const dir = join(resolve(opts.out), run.model);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    // Copies (clones where the filesystem can): the times set below must not reach the store's blobs.
    await ctx.store.materialize(run.packaged!.digest, dir, { copy: true });
    // Fixed times: identical model bytes give identical layers however often the stage re-runs.
    for (const rel of await listTree(dir)) await utimes(join(dir, rel), ctx.epoch, ctx.epoch);
    out.push({ ...results[i]!, dir });
  }
  return { models: out };
}

export interface ImageResult {
  target: string;
  server: string;
  tags: string[];
  /** Manifest digest (daemonless builds). */
  manifestDigest?: string;
  /** The engine's image id (engine builds). */
  imageId?: string;
  /** Bytes of config + layers (daemonless). */
  size?: number;
  layers?: ImageLayerInfo[];
  modelsDigest?: string;
  /** The gate summary put in the manifest annotations (daemonless). */
  annotations?: Record<string, string>;
  output?: string;
  pushed?: PushResult & { repository: string; referrers?: ReferrerPush[] };
}

export interface BuildOptions {
  /** Target name or `all`. */
  target?: string;
  /** oci:<dir> or docker-archive:<file>; with neither output nor push, the Docker engine builds. */
  output?: string;
  /** Registry repository to push to (host/name). */
  push?: string;
  base?: string;
  compression?: 'none' | 'gzip';
  /** false leaves the model bytes out: the runtime pulls each model's layer from `modelsRepository` at start (else quantizes at start). */
  bundleModels?: boolean;
  /** Where an image without model bytes pulls them from: the repository `bake push` pushed the bundled image to (default image.name). */
  modelsRepository?: string;
  network?: 'none' | 'host';
  /** Write docker/<recipe>/Dockerfile and docker/docker-bake.hcl only. */
  dockerfileOnly?: boolean;
  /** With push: also push the report and provenance as artifacts referring to the image (default true). */
  attach?: boolean;
}

export interface BuildResult {
  recipe: string;
  models: ModelResult[];
  images: ImageResult[];
  dockerfile?: string;
  bakeHcl?: string;
}

export async function buildImages(ctx: PipelineContext, recipe: Recipe, opts: BuildOptions = {}): Promise<BuildResult> {
  const targets = selectTargets(recipe, opts.target);
  if (opts.dockerfileOnly) {
    const { writeBuildFiles } = await import('../image/dockerfile/write.js');
    const files = await writeBuildFiles({ root: ctx.root, recipe });
    return { recipe: recipe.name, models: [], images: [], dockerfile: files.dockerfile, bakeHcl: files.bakeHcl };
  }
  if (!opts.output && !opts.push) return buildWithEngine(ctx, recipe, targets, opts);
  if (opts.output && !/^(oci|docker-archive):./.test(opts.output)) {
    throw new InputError(`--output ${opts.output}: unknown destination`, { field: '--output', expected: 'oci:<dir> or docker-archive:<file>' });
  }
  const needed = recipe.models.filter((m) => targets.some((t) => t.models.includes(m.id)));
  const { runs, results } = await runModels(ctx, recipe, needed, 'package');
  const oci = await import('../image/oci/index.js');
  const images: ImageResult[] = [];
  for (const { target, baked, result: r } of await bakeImages(ctx, recipe, targets, runs, opts)) {
    if (opts.bundleModels === false && opts.push) await checkModelLayersPushed(baked.layers);
    if (opts.output?.startsWith('oci:')) {
      await oci.writeOciLayout(baked.image, resolve(opts.output.slice(4)), { tags: baked.tags });
      r.output = opts.output;
    } else if (opts.output?.startsWith('docker-archive:')) {
      const file = targets.length > 1 ? opts.output.slice(15).replace(/(\.tar)?$/, `-${target.name}$1`) : opts.output.slice(15);
      await oci.writeDockerArchive(baked.image, resolve(file), { repoTags: baked.tags.map((t) => `${recipe.image.name}:${t}`) });
      r.output = `docker-archive:${file}`;
    }
    if (opts.push) {
      const log = (message: string) => ctx.onEvent({ type: 'log', step: 'push', message });
      const pushed = await oci.pushImage(baked.image, opts.push, { tags: baked.tags, onEvent: (e) => log(`${e.type} ${e.digest ?? ''}`) });
      r.pushed = { repository: opts.push, ...pushed };
      if (opts.attach !== false) {
        // The report and provenance of this image, as OCI artifacts whose subject is its manifest.
        const { attachToImage } = await import('../report/attach.js');
        const report = reportOf(ctx, recipe, { recipe: recipe.name, models: results, images: [r] });
        r.pushed.referrers = await attachToImage({ report, target: target.name, repository: opts.push, subject: oci.serializeImage(baked.image).manifest.descriptor, epoch: ctx.epoch, onEvent: log });
      }
    }
    images.push(r);
  }
  return { recipe: recipe.name, models: results, images };
}

/** Each target's image value (daemonless) for models that all packaged; the gate summary goes into its annotations. */
async function bakeImages(ctx: PipelineContext, recipe: Recipe, targets: TargetSpec[], runs: ChainRun[], opts: Pick<BuildOptions, 'compression' | 'base' | 'bundleModels' | 'modelsRepository'>): Promise<{ target: TargetSpec; baked: BakedImage; result: ImageResult }[]> {
  const packaged = new Map(runs.filter((r) => r.packaged).map((r) => [r.model, r.packaged!]));
  const reports = new Map(runs.map((r) => [r.model, r.report]));
  const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
  const { serializeImage } = await import('../image/oci/index.js');
  const out = [];
  for (const target of targets) {
    if (!target.models.every((id) => packaged.has(id))) continue; // a gate failed (recorded for a report)
    const annotations = gateAnnotations(target.models.map((id) => ({ id, report: reports.get(id) })));
    const baked = await assembleImage(ctx, recipe, target, packaged, entries, { compression: opts.compression, base: opts.base, annotations, bundleModels: opts.bundleModels, modelsRepository: opts.modelsRepository });
    const ser = serializeImage(baked.image);
    out.push({
      target,
      baked,
      result: {
        target: target.name,
        server: target.server.kind,
        tags: baked.tags,
        manifestDigest: ser.manifest.descriptor.digest,
        size: ser.config.descriptor.size + ser.layers.reduce((a, l) => a + l.size, 0),
        layers: baked.layers,
        modelsDigest: baked.modelsDigest,
        annotations,
      } satisfies ImageResult,
    });
  }
  return out;
}

/** The build report of a result (src/report/model.ts): from the API's typed results, the lock and the toolchain. */
export function reportOf(ctx: PipelineContext, recipe: Recipe, result: Pick<BuildResult, 'recipe' | 'models' | 'images'>, opts: { startup?: Record<string, number> } = {}): BakeReport {
  return buildReport({
    recipe,
    entries: frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root)),
    bakeVersion: bakeVersion(),
    toolchain: ctx.toolchain,
    models: result.models,
    images: result.images,
    ...(opts.startup ? { startup: opts.startup } : {}),
  });
}

/**
 * `bake report`: every model through verify and package with failed gates recorded rather than thrown,
 * and the image value of each target whose models all passed (nothing written or pushed).
 */
export async function reportRecipe(ctx: PipelineContext, recipe: Recipe, opts: { target?: string; base?: string; compression?: 'none' | 'gzip' } = {}): Promise<{ result: BuildResult; report: BakeReport }> {
  const targets = selectTargets(recipe, opts.target);
  const needed = recipe.models.filter((m) => targets.some((t) => t.models.includes(m.id)));
  const { runs, results } = await runModels(ctx, recipe, needed, 'package', 'record');
  const images = (await bakeImages(ctx, recipe, targets, runs, opts)).map((b) => b.result);
  const result: BuildResult = { recipe: recipe.name, models: results, images };
  return { result, report: reportOf(ctx, recipe, result) };
}

/**
 * An image without model bytes is only useful where its model layers are: before pushing one, the
 * registry must hold each (pushed with the bundled image by `bake push`).
 */
async function checkModelLayersPushed(layers: ImageLayerInfo[]): Promise<void> {
  const { RegistryClient } = await import('../image/registry/client.js');
  for (const l of layers) {
    if (!l.modelLayer) continue;
    const { digest, repository } = l.modelLayer;
    const slash = repository.indexOf('/');
    const client = new RegistryClient(repository.slice(0, slash));
    const res = await client.request('HEAD', `/v2/${repository.slice(slash + 1)}/blobs/${digest}`, { ok: [200, 404], what: `checking that ${repository} holds ${digest}` });
    await res.body?.cancel();
    if (res.status === 404) {
      throw new InputError(`${repository} does not hold the layer of ${l.what.replace('manifest ', 'model ')} (${digest}), which this image without model bytes would pull at start`, {
        field: '--bundle-models', hint: `push the bundled image there first (\`bake push <recipe> --to ${repository}\`), or name where it is with --models-from`,
      });
    }
  }
}

/** `bake build` without --output: the Dockerfile through the engine's BuildKit (models run in its stages). */
async function buildWithEngine(ctx: PipelineContext, recipe: Recipe, targets: TargetSpec[], opts: BuildOptions): Promise<BuildResult> {
  const { buildRecipe } = await import('../image/docker/index.js');
  const { modelsDigest } = await import('../lock/lockfile.js');
  const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
  const digests: Record<string, string> = {};
  for (const t of targets) digests[t.name] = modelsDigest(t.models.map((id) => entries.get(id)!)).slice(0, 12);
  const buildArgs: Record<string, string> = { BUNDLE_MODELS: String(opts.bundleModels ?? true), SOURCE_DATE_EPOCH: String(ctx.epoch), ...(opts.modelsRepository ? { BAKE_MODELS_REPOSITORY: opts.modelsRepository } : {}) };
  // The endpoint is not a secret; the token only ever travels as the BuildKit secret `hf_token`.
  if (ctx.env.HF_ENDPOINT) buildArgs.HF_ENDPOINT = ctx.hub.endpoint;
  const result = await buildRecipe({
    root: ctx.root,
    recipe,
    targets: targets.map((t) => t.name),
    buildArgs,
    base: opts.base,
    network: opts.network ?? 'none',
    hfToken: ctx.hub.token,
    noCache: ctx.force,
    modelsDigest: digests,
    onEvent: (target, e) => {
      if (e.type === 'step' && (e.step.completed || e.step.cached || e.step.error)) {
        ctx.onEvent({ type: 'log', step: 'bake', message: `[${target}] ${e.step.cached ? 'CACHED ' : ''}${e.step.name}${e.step.error ? ` ERROR ${e.step.error}` : ''}` });
      } else if (e.type === 'log') {
        for (const line of e.text.split('\n').filter((l) => l.trim())) ctx.onEvent({ type: 'log', step: 'bake', message: `[${target}] ${line}` });
      }
    },
  });
  return {
    recipe: recipe.name,
    models: [],
    images: result.images.map((i) => ({ target: i.target, server: targets.find((t) => t.name === i.target)!.server.kind, tags: i.tags, imageId: i.imageId })),
    dockerfile: result.dockerfile,
    bakeHcl: result.bakeHcl,
  };
}
