// One entry per recipe `quantize.format`: how to quantize a fetched model and how to verify the result.
// Adding a format means adding an entry here; the chain in model.ts does not change.
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { modelFolderName } from '../convert/model-name.js';
import type { GgufQuantSpec, ModelSpec, OnnxQuantSpec, QuantSpec } from '../recipe/types.js';
import type { ArtifactFile } from '../store/store.js';
import { dataDigest } from '../data/index.js';
import { InputError } from '../util/errors.js';
import type { VerifyReport } from '../verify/gates.js';
import type { PipelineContext } from './context.js';
import { runStep, type StepDef, type StepResult } from './step.js';

export interface Quantizer {
  version: number;
  /** `recipeDir` resolves files the spec names (calibration texts). */
  quantize(ctx: PipelineContext, model: ModelSpec, source: StepResult, recipeDir: string): Promise<{ quantized: StepResult; reference?: StepResult }>;
  verifyVersion: number;
  verify?: (ctx: PipelineContext, model: ModelSpec, reference: StepResult, quantized: StepResult, scratch: string, evalText?: string, recipeDir?: string) => Promise<VerifyReport>;
  /**
   * The quantized files as they ship for `model` (default: as cached). Cached steps may be shared by
   * models with the same input, so they name nothing after a model; the package step does.
   */
  packagedFiles?(model: ModelSpec, files: ArtifactFile[]): ArtifactFile[];
}

/** One eval or calibration sample per non-empty line. */
function splitTexts(text: string): string[] {
  return text.split(/\n+/).map((s) => s.trim()).filter(Boolean);
}

async function materialize(ctx: PipelineContext, r: StepResult, dir: string): Promise<string> {
  await ctx.store.materialize(r.digest, dir);
  return dir;
}

const onnx: Quantizer = {
  // 2: warnings (nothing quantized, generated calibration) stored with the result.
  version: 2,
  async quantize(ctx, model, source, recipeDir) {
    const spec = model.quantize as OnnxQuantSpec;
    // Calibration texts are part of the key by content, not by file name.
    const calibrationTexts = spec.calibration?.texts ? splitTexts(await readFile(join(recipeDir, spec.calibration.texts), 'utf8')) : undefined;
    const calibrationData = await dataDigest(spec.calibration?.data, { field: 'quantize.calibration.data', baseDir: recipeDir });
    const quantized = await runStep(ctx.store, { step: 'quantize', version: this.version, inputs: [source.digest], params: { spec, task: model.task, calibrationTexts, ...(calibrationData && { calibrationData }) }, model: model.id }, ctx.onEvent, async (scratch) => {
      const { quantizeOnnxModel } = await import('../quant/onnx/index.js');
      const src = await materialize(ctx, source, join(scratch, 'src'));
      const out = join(scratch, 'out');
      await mkdir(out, { recursive: true });
      // Warnings are stored with the result and shown below, whether this step ran or was cached.
      const r = await quantizeOnnxModel(src, out, spec, { task: model.task, calibrationTexts, dataDir: recipeDir, onEvent: (e) => e.type !== 'warning' && ctx.onEvent({ type: 'log', step: 'quantize', model: model.id, message: e.message }) });
      return ctx.store.putTree(out, 'quantized', { params: r.params, keptFloat: r.keptFloat, ...(r.warnings.length && { warnings: r.warnings }) });
    }, { force: ctx.force });
    for (const w of (quantized.artifact.meta.warnings as string[] | undefined) ?? []) ctx.onEvent({ type: 'log', level: 'warning', step: 'quantize', model: model.id, message: w });
    return { quantized };
  },
  // 2: data samples, one-value outputs by error and decision, CTC decoding, synthetic-input warnings.
  verifyVersion: 2,
  async verify(ctx, model, reference, quantized, scratch, evalText, recipeDir) {
    const { verifyOnnxModel } = await import('../verify/onnx/index.js');
    const a = await materialize(ctx, reference, join(scratch, 'reference'));
    const b = await materialize(ctx, quantized, join(scratch, 'quantized'));
    return verifyOnnxModel(model.id, a, b, model.verify, { task: model.task, evalTexts: evalText ? splitTexts(evalText) : undefined, dataDir: recipeDir, quantization: quantized.artifact.meta as { params?: Record<string, unknown> } });
  },
};

/** convert: HF checkpoint -> full-precision GGUF (what convert_hf_to_gguf.py gives), the verify reference. */
export function ggufConvertDef(model: ModelSpec, sourceDigest: string): StepDef {
  const spec = model.quantize as GgufQuantSpec;
  // general.name falls back to the folder name, so it is keyed; it comes from the recipe, not the model id.
  return { step: 'convert', version: gguf.version, inputs: [sourceDigest], params: { type: spec.source_type ?? 'F16', folder: modelFolderName(model) }, model: model.id };
}

const gguf: Quantizer = {
  version: 2,
  async quantize(ctx, model, source) {
    const spec = model.quantize as GgufQuantSpec;
    const sourceType = spec.source_type ?? 'F16';
    const fileOf = (r: StepResult) => r.artifact.files.find((f) => f.path.endsWith('.gguf'))!;
    const reference = await runStep(ctx.store, ggufConvertDef(model, source.digest), ctx.onEvent, async (scratch) => {
      const { convertHfToGguf } = await import('../quant/gguf/index.js');
      const src = await materialize(ctx, source, join(scratch, 'src'));
      const out = join(scratch, 'out');
      await mkdir(out, { recursive: true });
      await convertHfToGguf(src, join(out, `model-${sourceType}.gguf`), { type: sourceType, modelId: model.id, folderName: modelFolderName(model), onEvent: (e) => ctx.onEvent({ type: 'log', step: 'convert', model: model.id, message: e.message }) });
      return ctx.store.putTree(out, 'gguf-reference', {});
    }, { force: ctx.force });
    if (spec.type === sourceType) return { quantized: reference, reference };
    // quantize: the reference GGUF -> the recipe's type, as llama-quantize does it.
    const quantized = await runStep(ctx.store, { step: 'quantize', version: this.version, inputs: [reference.digest], params: { type: spec.type }, model: model.id }, ctx.onEvent, async (scratch) => {
      const { requantizeGguf } = await import('../quant/gguf/index.js');
      const out = join(scratch, 'out');
      await mkdir(out, { recursive: true });
      const r = await requantizeGguf(ctx.store.blobPath(fileOf(reference).sha256), join(out, `model-${spec.type}.gguf`), { type: spec.type });
      return ctx.store.putTree(out, 'quantized', { params: { type: spec.type, source_type: sourceType, typeCounts: r.typeCounts } });
    }, { force: ctx.force });
    return { quantized, reference };
  },
  packagedFiles(model, files) {
    const { type } = model.quantize as GgufQuantSpec;
    return files.map((f) => (f.path.endsWith('.gguf') ? { ...f, path: `${model.id}-${type}.gguf` } : f));
  },
  verifyVersion: 1,
  async verify(ctx, model, reference, quantized, _scratch, evalText) {
    const { verifyGguf } = await import('../verify/llama/index.js');
    const ref = reference.artifact.files.find((f) => f.path.endsWith('.gguf'))!;
    const q = quantized.artifact.files.find((f) => f.path.endsWith('.gguf'))!;
    return verifyGguf(model.id, ctx.store.blobPath(ref.sha256), ctx.store.blobPath(q.sha256), model.verify, { evalText });
  },
};

const none: Quantizer = {
  version: 1,
  async quantize(_ctx, _model, source) {
    return { quantized: source };
  },
  verifyVersion: 1,
};

const QUANTIZERS: Record<QuantSpec['format'], Quantizer> = {
  'onnx-int8': onnx,
  'onnx-fp16': onnx,
  gguf,
  none,
};

export function quantizerFor(spec: QuantSpec): Quantizer {
  const q = QUANTIZERS[spec.format];
  if (!q) throw new InputError(`unknown quantize.format ${JSON.stringify(spec.format)}`, { field: 'quantize.format', expected: Object.keys(QUANTIZERS).join(', ') });
  return q;
}
