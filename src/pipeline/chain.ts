// The pipeline of one model, declared once: for each recipe `quantize.format`, the list of steps
// fetch -> [convert] -> quantize -> verify -> package, each with its version, the tools that shape its
// bytes, its inputs and parameters, and how it runs. The runner (run.ts) executes such a list; `bake
// plan` (plan.ts) walks the same list against the store, so both compute the same keys.
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { dataDigest } from '../data/index.js';
import { pullAndRead, storeSnapshot, type PullEvent } from '../hub/pull.js';
import { modelFolderName } from '../convert/model-name.js';
import { localModelDir, storeLocalModel } from '../lock/local.js';
import type { LockEntry } from '../lock/types.js';
import { readEvalText, readRecipeTextFile } from '../recipe/eval-text.js';
import type { AwqQuantSpec, GgufQuantSpec, ModelSpec, OnnxQuantSpec, QuantSpec, Recipe } from '../recipe/types.js';
import { modelsForTarget } from '../recipe/targets.js';
import { artifactDigest, type Artifact, type ArtifactFile } from '../store/store.js';
import { BakeError, InputError } from '../util/errors.js';
import { prettyJson } from '../util/json.js';
import { enforceGates, type VerifyReport } from '../verify/gates.js';
import type { PipelineContext } from './context.js';
import type { StepName } from './events.js';
import type { StepDef, StepIO, StepResult, Stored } from './step.js';

export const MANIFEST_NAME = 'manifest.json';
export const REPORT_NAME = 'verify-report.json';

/** A model's steps in order, and which step's artifact plays which part. */
export interface Chain {
  model: ModelSpec;
  entry: LockEntry;
  steps: StepDef[];
  /** The step whose artifact ships (before packaging). */
  quantized: StepName;
  /** The full-precision artifact verify compares against. */
  reference: StepName;
}

export interface ChainInputs {
  ctx: PipelineContext;
  recipe: Recipe;
  model: ModelSpec;
  entry: LockEntry;
}

type FormatChain = (c: ChainInputs) => Promise<Omit<Chain, 'model' | 'entry'>>;

/** One entry per recipe `quantize.format`. Adding a format means adding an entry here. */
const FORMATS: Record<QuantSpec['format'], FormatChain> = {
  'onnx-int8': onnxChain,
  'onnx-fp16': onnxChain,
  gguf: ggufChain,
  awq: awqChain,
  none: noneChain,
};

export async function chainFor(c: ChainInputs): Promise<Chain> {
  const make = FORMATS[c.model.quantize.format];
  if (!make) {
    throw new InputError(`model ${c.model.id}: unknown quantize.format ${JSON.stringify(c.model.quantize.format)}`, {
      file: c.recipe.file, field: `models.${c.model.id}.quantize.format`, expected: Object.keys(FORMATS).join(', '),
    });
  }
  return { model: c.model, entry: c.entry, ...(await make(c)) };
}

// ---- the steps -------------------------------------------------------------------------------

/** The artifact fetch stores: exactly the locked files, so its digest is known from the lock alone. */
export function sourceArtifact(entry: LockEntry): Artifact {
  const files: ArtifactFile[] = entry.files.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size }));
  return { kind: 'source', files: files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)), meta: {} };
}

/** fetch: the locked files, verified, as a store artifact (from the Hub cache or a local folder). */
function fetchStep({ recipe, model, entry }: ChainInputs): StepDef {
  return {
    name: 'fetch',
    version: 1,
    tools: [],
    inputs: [],
    // Keyed by content only: the same bytes from another repo or commit are the same input.
    params: { files: entry.files.map((f) => [f.path, f.sha256, f.size]) },
    predicted: artifactDigest(sourceArtifact(entry)),
    async run({ ctx }) {
      // From the Hub cache (a cached file the store finds corrupt is downloaded again, once) or the
      // local folder (links may not leave it); every file checked against the lock's size and sha256.
      const files = entry.source === 'hub'
        ? await pullAndRead(entry, ctx.hub, { onEvent: hubEvents(ctx, model.id) }, () => storeSnapshot(ctx.store, entry, ctx.hub))
        : await storeLocalModel(ctx.store, recipe, model, entry, ctx.root);
      return ctx.store.putArtifact({ kind: 'source', files, meta: {} });
    },
    async check(result, ctx) {
      // Errors of later steps on copies of these files name the user's files: the local folder or `org/name`.
      ctx.store.nameArtifact(result.digest, result.artifact, entry.source === 'hub' ? entry.repo : localModelDir(model, recipe.file, ctx.root), model.id);
    },
  };
}

/** Hub transfer events as pipeline events of the fetch step. */
export function hubEvents(ctx: PipelineContext, model: string): (e: PullEvent) => void {
  return (e) => {
    if (e.type === 'progress' || e.type === 'done') ctx.onEvent({ type: 'progress', step: 'fetch', model, label: e.path, bytes: e.bytes ?? 0, total: e.total });
    if (e.type === 'retry') ctx.onEvent({ type: 'log', step: 'fetch', model, message: `retrying ${e.path}${e.attempt ? ` (attempt ${e.attempt})` : ''}: ${e.reason}` });
  };
}

async function materialize(io: StepIO, r: StepResult, name: string): Promise<string> {
  const dir = join(io.scratch, name);
  await io.ctx.store.materialize(r.digest, dir);
  return dir;
}

/** One eval or calibration sample per non-empty line. */
function splitTexts(text: string): string[] {
  return text.split(/\n+/).map((s) => s.trim()).filter(Boolean);
}


/** Warnings a step stored with its result (nothing quantized, synthetic inputs), shown whether it ran or was cached. */
function showWarnings(ctx: PipelineContext, step: StepName, model: string, warnings: unknown): void {
  for (const w of (warnings as string[] | undefined) ?? []) ctx.onEvent({ type: 'log', level: 'warning', step, model, message: w });
}

async function onnxChain(c: ChainInputs): Promise<Omit<Chain, 'model' | 'entry'>> {
  const { recipe, model } = c;
  const spec = model.quantize as OnnxQuantSpec;
  const recipeDir = dirname(recipe.file);
  // Calibration texts and samples are part of the key by content, not by file name.
  const calibrationTexts = spec.calibration?.texts ? splitTexts(await readRecipeTextFile(recipe.file, spec.calibration.texts, `models.${model.id}.quantize.calibration.texts`)) : undefined;
  const calibrationData = await dataDigest(spec.calibration?.data, { field: 'quantize.calibration.data', baseDir: recipeDir });
  const quantize: StepDef = {
    name: 'quantize',
    // 2: warnings (nothing quantized, generated calibration) stored with the result.
    version: 2,
    // onnxruntime's optimizer folds constants first and runs the calibration.
    tools: ['onnxruntime'],
    inputs: ['fetch'],
    params: { spec, task: model.task, calibrationTexts, ...(calibrationData && { calibrationData }) },
    async run(io) {
      const { quantizeOnnxModel } = await import('../quant/onnx/index.js');
      const src = await materialize(io, io.inputs[0]!, 'src');
      const out = join(io.scratch, 'out');
      await mkdir(out, { recursive: true });
      const r = await quantizeOnnxModel(src, out, spec, { task: model.task, calibrationTexts, dataDir: recipeDir, onEvent: (e) => e.type !== 'warning' && io.log(e.message) });
      return io.ctx.store.putTree(out, 'quantized', { params: r.params, keptFloat: r.keptFloat, ...(r.warnings.length && { warnings: r.warnings }) });
    },
    async check(result, ctx) {
      showWarnings(ctx, 'quantize', model.id, result.artifact.meta.warnings);
    },
  };
  const steps = [fetchStep(c), quantize];
  // 2: data samples, one-value outputs by error and decision, CTC decoding, synthetic-input warnings.
  // 3: tokenizers loaded one at a time (two text models verified at once could read each other's); embedders and rerankers compared as served.
  const verify = await verifyStep(c, 'fetch', 'quantize', ['onnxruntime'], 3, async (io, evalText) => {
    const { verifyOnnxModel } = await import('../verify/onnx/index.js');
    const a = await materialize(io, io.inputs[0]!, 'reference');
    const b = await materialize(io, io.inputs[1]!, 'quantized');
    return verifyOnnxModel(model.id, a, b, model.verify, {
      task: model.task, evalTexts: evalText ? splitTexts(evalText) : undefined, dataDir: recipeDir, quantization: io.inputs[1]!.artifact.meta as { params?: Record<string, unknown> },
      embedding: model.embedding, rerank: model.rerank,
    });
  });
  if (verify) steps.push(verify);
  steps.push(packageStep(c, 'quantize', verify ? 'verify' : undefined));
  return { steps, quantized: 'quantize', reference: 'fetch' };
}

function ggufFileOf(r: StepResult, model: ModelSpec): ArtifactFile {
  const ggufs = r.artifact.files.filter((f) => f.path.endsWith('.gguf'));
  if (ggufs.length !== 1) {
    throw new InputError(`model ${model.id}: expected one .gguf file, found ${ggufs.length}${ggufs.length ? `: ${ggufs.map((f) => f.path).join(', ')}` : ''}`, {
      field: `models.${model.id}.files`, hint: 'narrow the model\'s files: patterns to one GGUF file',
    });
  }
  return ggufs[0]!;
}

async function ggufChain(c: ChainInputs): Promise<Omit<Chain, 'model' | 'entry'>> {
  const { model, entry } = c;
  const spec = model.quantize as GgufQuantSpec;
  const sourceType = spec.source_type ?? 'F16';
  // A GGUF on the Hub (no safetensors beside it) is requantized as it is; a checkpoint is converted first.
  const fromGguf = entry.files.some((f) => f.path.endsWith('.gguf')) && !entry.files.some((f) => f.path.endsWith('.safetensors'));
  const steps: StepDef[] = [fetchStep(c)];
  let reference: StepName = 'fetch';
  if (!fromGguf) {
    steps.push({
      name: 'convert',
      // The F16/BF16 rounding of the converted file runs in the GGUF kernels.
      tools: ['gguf-kernels'],
      inputs: ['fetch'],
      // 3: BERT-family encoders; decoders carry their chat template.
      version: 3,
      // general.name falls back to the folder name, so it is keyed; it comes from the recipe, not the model id.
      params: { type: sourceType, folder: modelFolderName(model) },
      async run(io) {
        const { convertHfToGguf } = await import('../quant/gguf/index.js');
        const src = await materialize(io, io.inputs[0]!, 'src');
        const out = join(io.scratch, 'out');
        await mkdir(out, { recursive: true });
        // Cached steps may be shared by models with the same input: their files are named for no model.
        await convertHfToGguf(src, join(out, `model-${sourceType}.gguf`), { type: sourceType, modelId: model.id, folderName: modelFolderName(model), onEvent: (e) => io.log(e.message) });
        return io.ctx.store.putTree(out, 'gguf-reference', {});
      },
    });
    reference = 'convert';
  }
  // The package step (keyed by the model id) names the file for the model.
  const shipAs = `${model.id}-${spec.type}.gguf`;
  // Text-embedding models (bert, nomic-bert) are verified by their embeddings, not by perplexity.
  const embedding = model.task === 'feature-extraction';
  if (spec.type === sourceType && !fromGguf) {
    // Shipped as converted: an embedding model still has its conversion checked against its ONNX export.
    const verify = embedding ? await embeddingVerifyStep(c, reference, undefined) : undefined;
    if (verify) steps.push(verify);
    steps.push(packageStep(c, 'convert', verify ? 'verify' : undefined, shipAs));
    return { steps, quantized: 'convert', reference };
  }
  steps.push({
    name: 'quantize',
    // 3: the tensors kept off the file type's default type, with the rule that chose theirs, stored in meta.
    version: 3,
    tools: ['gguf-kernels'],
    inputs: [reference],
    params: { type: spec.type },
    async run(io) {
      const { requantizeGguf } = await import('../quant/gguf/index.js');
      const input = io.ctx.store.blobPath(ggufFileOf(io.inputs[0]!, model).sha256);
      const out = join(io.scratch, 'out');
      await mkdir(out, { recursive: true });
      const r = await requantizeGguf(input, join(out, `model-${spec.type}.gguf`), { type: spec.type });
      return io.ctx.store.putTree(out, 'quantized', { params: { type: spec.type, source_type: sourceType, typeCounts: r.typeCounts }, kept: r.kept });
    },
  });
  // 2: the per-token KLD histogram in the report.
  const verify = embedding ? await embeddingVerifyStep(c, reference, 'quantize') : await verifyStep(c, reference, 'quantize', ['llama.cpp'], 2, async (io, evalText) => {
    const { verifyGguf } = await import('../verify/llama/index.js');
    const ref = io.ctx.store.blobPath(ggufFileOf(io.inputs[0]!, model).sha256);
    const q = io.ctx.store.blobPath(ggufFileOf(io.inputs[1]!, model).sha256);
    return verifyGguf(model.id, ref, q, model.verify, { evalText });
  });
  if (verify) steps.push(verify);
  steps.push(packageStep(c, 'quantize', verify ? 'verify' : undefined, shipAs));
  return { steps, quantized: 'quantize', reference };
}

/**
 * awq: fetch -> quantize (AWQ search on bake's forward pass, written as the recipe's checkpoint layout)
 * -> verify (unpacked as vLLM reads it, then KLD against the original next to round-to-nearest) -> package.
 * The calibration text enters the key by content (its sha256), with samples and length.
 */
async function awqChain(c: ChainInputs): Promise<Omit<Chain, 'model' | 'entry'>> {
  const { recipe, model } = c;
  const spec = model.quantize as AwqQuantSpec;
  const { builtinCalibration, calibrationText, resolvedSpec } = await import('../quant/awq/index.js');
  const field = `models.${model.id}.quantize.calibration.texts`;
  const calibration = spec.calibration?.texts
    ? calibrationText(spec.calibration.texts, await readRecipeTextFile(recipe.file, spec.calibration.texts, field))
    : await builtinCalibration();
  const quantize: StepDef = {
    name: 'quantize',
    version: 1,
    // onnxruntime runs the forward passes the search measures; awq-kernels are the search and packers.
    tools: ['onnxruntime', 'awq-kernels'],
    inputs: ['fetch'],
    params: { spec: resolvedSpec(spec), calibration: { set: calibration.name, sha256: calibration.sha256 } },
    async run(io) {
      const { quantizeAwq } = await import('../quant/awq/index.js');
      const src = await materialize(io, io.inputs[0]!, 'src');
      const out = join(io.scratch, 'out');
      const r = await quantizeAwq(src, out, spec, { modelId: model.id, calibration, onEvent: (e) => e.type === 'log' && io.log(e.message) });
      return io.ctx.store.putTree(out, 'quantized', { params: r.params, keptFloat: r.plan.kept, digests: r.digests, ...(r.warnings.length && { warnings: r.warnings }) });
    },
    async check(result, ctx) {
      showWarnings(ctx, 'quantize', model.id, result.artifact.meta.warnings);
    },
  };
  const steps = [fetchStep(c), quantize];
  const verify = await verifyStep(c, 'fetch', 'quantize', ['onnxruntime', 'awq-kernels'], 1, async (io, evalText) => {
    const { verifyAwq } = await import('../verify/awq/index.js');
    const src = await materialize(io, io.inputs[0]!, 'reference');
    const q = await materialize(io, io.inputs[1]!, 'quantized');
    return verifyAwq(model.id, src, q, model.verify, { evalText, digests: io.inputs[1]!.artifact.meta.digests as Record<string, string> | undefined, threads: spec.threads });
  });
  if (verify) steps.push(verify);
  steps.push(packageStep(c, 'quantize', verify ? 'verify' : undefined));
  return { steps, quantized: 'quantize', reference: 'fetch' };
}

/**
 * none: fetch -> package. A model a vLLM target serves (an AWQ upload, say) gets a verify step that
 * checks its checkpoint the way vLLM will load it: a broken upload fails the build, not the server.
 */
async function noneChain(c: ChainInputs): Promise<Omit<Chain, 'model' | 'entry'>> {
  const { recipe, model } = c;
  const steps: StepDef[] = [fetchStep(c)];
  const onVllm = recipe.targets.some((t) => t.server.kind === 'vllm' && modelsForTarget(recipe, t).some((m) => m.id === model.id));
  if (!onVllm || model.verify.skip) {
    steps.push(packageStep(c, 'fetch'));
    return { steps, quantized: 'fetch', reference: 'fetch' };
  }
  steps.push({
    name: 'verify',
    version: 1,
    tools: ['awq-kernels'],
    inputs: ['fetch'],
    params: { check: 'vllm-checkpoint' },
    async run(io) {
      const { checkServedCheckpoint } = await import('../verify/awq/index.js');
      const dir = await materialize(io, io.inputs[0]!, 'model');
      const report = await checkServedCheckpoint(model.id, dir);
      const { sha256, size } = await io.ctx.store.putBytes(prettyJson(report));
      return io.ctx.store.putArtifact({ kind: 'verify-report', files: [{ path: REPORT_NAME, sha256, size }], meta: {} });
    },
    async check(result, ctx) {
      enforceGates(model.id, await readReport(ctx, result, model.id));
    },
  });
  steps.push(packageStep(c, 'fetch', 'verify'));
  return { steps, quantized: 'fetch', reference: 'fetch' };
}

/**
 * verify of a GGUF embedding model: llama.cpp's embeddings of the converted file against onnxruntime's on
 * the checkpoint's ONNX export (read from the fetched files), and the quantized file's against the
 * converted one's. `quantized` undefined: the converted file ships as it is.
 */
async function embeddingVerifyStep(c: ChainInputs, reference: StepName, quantized: StepName | undefined): Promise<StepDef | undefined> {
  const { model } = c;
  const inputs: StepName[] = quantized ? [reference, quantized, 'fetch'] : [reference, 'fetch'];
  return verifyStep(c, reference, quantized ?? reference, ['llama.cpp', 'onnxruntime'], 1, async (io, evalText) => {
    const { verifyGgufEmbeddings } = await import('../verify/llama/embedding.js');
    const ref = io.ctx.store.blobPath(ggufFileOf(io.inputs[0]!, model).sha256);
    const q = quantized ? io.ctx.store.blobPath(ggufFileOf(io.inputs[1]!, model).sha256) : undefined;
    const source = await materialize(io, io.inputs[inputs.length - 1]!, 'source');
    return verifyGgufEmbeddings(model.id, ref, q, model.verify, { texts: evalText ? splitTexts(evalText) : undefined, sourceDir: source });
  }, inputs);
}

/**
 * verify: the quantized artifact against the reference, as a JSON report artifact. The recipe's gates
 * are enforced on the report whether it ran now or came from the cache. None when `verify.skip`.
 */
async function verifyStep(
  { recipe, model }: ChainInputs,
  reference: StepName,
  quantized: StepName,
  tools: StepDef['tools'],
  version: number,
  verify: (io: StepIO, evalText: string | undefined) => Promise<VerifyReport>,
  inputs: StepName[] = [reference, quantized],
): Promise<StepDef | undefined> {
  if (model.verify.skip) return undefined;
  const evalText = await readEvalText(model, recipe.file);
  // Eval samples enter the key by content: changing a file re-runs verify.
  const evalData = await dataDigest(model.verify.data, { field: 'verify.data', baseDir: dirname(recipe.file) });
  return {
    name: 'verify',
    version,
    tools,
    inputs,
    // An embedder or reranker is compared as served (pooled vectors, rankings): its declaration is keyed.
    params: { verify: model.verify, task: model.task, evalText, ...(evalData && { evalData }), ...(model.embedding && { embedding: model.embedding }), ...(model.rerank && { rerank: model.rerank }) },
    async run(io) {
      const report = await verify(io, evalText);
      const { sha256, size } = await io.ctx.store.putBytes(prettyJson(report));
      return io.ctx.store.putArtifact({ kind: 'verify-report', files: [{ path: REPORT_NAME, sha256, size }], meta: {} });
    },
    async check(result, ctx) {
      const report = await readReport(ctx, result, model.id);
      showWarnings(ctx, 'verify', model.id, report.warnings);
      enforceGates(model.id, report);
    },
  };
}

/** A stored verify report, named for `model` (the step is keyed without the id: models with the same input share it). */
export async function readReport(ctx: PipelineContext, r: Stored, model: string): Promise<VerifyReport> {
  return { ...(JSON.parse(await readFile(ctx.store.blobPath(r.artifact.files[0]!.sha256), 'utf8')) as VerifyReport), model };
}

/**
 * package: the shipped files plus manifest.json (what shipped, where from, how made and checked).
 * `ggufName` renames the one GGUF file for the model (cached GGUF steps name theirs for no model).
 */
function packageStep({ model, entry }: ChainInputs, quantized: StepName, verify?: StepName, ggufName?: string): StepDef {
  return {
    name: 'package',
    // 3: the manifest carries the recipe's quantize spec (the runtime can redo the step) and how the model is served.
    version: 3,
    tools: [],
    inputs: verify ? [quantized, verify] : [quantized],
    params: { id: model.id, entry: { ...entry, fragment: undefined }, ggufName, quantize: model.quantize, task: model.task, embedding: model.embedding, rerank: model.rerank },
    async run({ ctx, inputs }) {
      const [q, v] = inputs as [StepResult, StepResult | undefined];
      const report = v ? await readReport(ctx, v, model.id) : undefined;
      const files = ggufName ? q.artifact.files.map((f) => (f.path.endsWith('.gguf') ? { ...f, path: ggufName } : f)) : q.artifact.files;
      const manifest = modelManifest(model, entry, q, report, files);
      const m = await ctx.store.putBytes(prettyJson(manifest));
      return ctx.store.putArtifact({ kind: 'model', files: [...files, { path: MANIFEST_NAME, ...m }], meta: {} });
    },
  };
}

/** /app/models/<id>/manifest.json: what shipped, where it came from, how it was made and checked. */
export function modelManifest(model: ModelSpec, entry: LockEntry, quantized: Stored, report: VerifyReport | undefined, files = quantized.artifact.files): Record<string, unknown> {
  if (quantized.artifact.files.some((f) => f.path === MANIFEST_NAME)) {
    throw new BakeError(`model ${model.id}: the quantized output already has a ${MANIFEST_NAME}`, 'failure');
  }
  return {
    schema: 'bake.model.v1',
    id: model.id,
    task: model.task,
    source: { type: entry.source, repo: entry.repo, revision: entry.revision, commit: entry.commit, files: entry.files },
    files,
    // spec: what the recipe asked, so a runtime without the model bytes can run the same step (src/runtime/onnx/unbundled.ts).
    quantization: { format: model.quantize.format, spec: model.quantize, params: quantized.artifact.meta.params ?? model.quantize, kept_float: quantized.artifact.meta.keptFloat },
    verification: report ? { passed: report.passed, metrics: reproducibleMetrics(report.metrics), gates: report.gates } : { skipped: true },
    ...(model.embedding && { embedding: model.embedding }),
    ...(model.rerank && { rerank: model.rerank }),
  };
}

/**
 * Timings and memory vary from run to run; in the manifest they would change the model's layer digest
 * on every rebuild. They stay in the verify report (`bake verify`), not in what ships.
 */
export function reproducibleMetrics(metrics: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(metrics).filter(([k]) => !/latency|rss|_ms$|seconds|time/.test(k)));
}
