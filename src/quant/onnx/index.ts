// Entry point for `quantize: { format: onnx-int8 | onnx-fp16 }`: picks the model's ONNX file(s), resolves
// parameters the way transformers.js's q8 export does, rewrites each file and lays out the output folder
// as transformers.js looks for it (onnx/model_quantized.onnx ...), carrying every non-ONNX file along.
import { copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import picomatch from 'picomatch';
import { modelTensorBytes, opCounts, readOnnx, writeOnnx, type ModelProto } from '../../formats/onnx/index.js';
import type { OnnxQuantSpec } from '../../recipe/types.js';
import { fromSpec, type GenerateOptions } from '../../model/onnx/index.js';
import { InputError } from '../../util/errors.js';
import { safeJoin, writeFileAtomic } from '../../util/fs.js';
import { DYNAMIC_DEFAULT_OPS, quantizeDynamic, type DynamicParams } from './dynamic.js';
import { convertToFloat16 } from './fp16.js';
import { foldConstants } from './preprocess.js';
import type { KeptFloat } from './graph-rewrite.js';
import { quantizeStatic, STATIC_DEFAULT_OPS, type CalibrationInputs } from './static.js';
import { whyNothingQuantized } from './diagnose.js';

export type { KeptFloat } from './graph-rewrite.js';
export { quantizeDynamic, DYNAMIC_DEFAULT_OPS } from './dynamic.js';
export { quantizeStatic } from './static.js';
export { convertToFloat16 } from './fp16.js';
export { whyNothingQuantized, type NothingQuantized } from './diagnose.js';
export { quantizeWeight, qRange, roundHalfEven } from './weights.js';

/** transformers.js file-name suffix per dtype (src/utils/dtypes.js). */
export const DTYPE_SUFFIX = { q8: '_quantized', int8: '_int8', uint8: '_uint8', fp16: '_fp16' } as const;
export type OnnxDtype = keyof typeof DTYPE_SUFFIX;

/** Model types transformers.js exports as BERT-style encoders (quantized per channel with reduce_range). */
const ENCODER_MODEL_TYPES = new Set(['bert', 'roberta', 'xlm-roberta', 'distilbert', 'albert', 'electra', 'mpnet', 'deberta', 'deberta-v2', 'camembert', 'mobilebert', 'squeezebert', 'nomic_bert', 'modernbert', 'jina_bert', 'ernie']);
const ENCODER_TASKS = new Set(['feature-extraction', 'sentence-similarity', 'text-classification', 'token-classification', 'zero-shot-classification', 'fill-mask', 'question-answering']);
/** Ops whose presence makes transformers.js pick uint8 weights for q8 (onnxruntime kernels need it). */
const UINT8_WEIGHT_OPS = ['Conv', 'GroupQueryAttention', 'MultiHeadAttention'];

export interface QuantizeEvent { type: string; message: string }

export interface QuantizeResult {
  outputs: string[];
  keptFloat: { node: string; op: string; reason: string }[];
  params: Record<string, unknown>;
  /** Sentences to show the user (nothing quantized, calibration on generated inputs); also sent as `warning` events. */
  warnings: string[];
}

const GENERATED_CALIBRATION_WARNING = 'static calibration ranges come from generated inputs, not real samples: activation scales fitted to random inputs can clip or waste '
  + 'the range real data needs; give real samples under quantize.calibration.data (path, kind, preprocess)';

/** Relative posix paths of every regular file under `dir`. */
async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else if (e.isFile()) out.push(rel);
  }
  return out.sort();
}

const isOnnxPayload = (rel: string) => /\.onnx$|\.onnx_data(_\d+)?$|\.onnx\.data$/.test(rel);

/** Which ONNX files to quantize: spec.files globs, else onnx/model.onnx, model.onnx, or the only .onnx file. */
export function selectOnnxFiles(all: string[], spec: Pick<OnnxQuantSpec, 'files'>, srcDir: string): string[] {
  const onnx = all.filter((f) => f.endsWith('.onnx'));
  if (spec.files?.length) {
    const matchers = spec.files.map((p) => picomatch(p, { basename: !p.includes('/') }));
    const hit = onnx.filter((f) => matchers.some((m) => m(f)));
    if (!hit.length) throw new InputError(`quantize.files ${JSON.stringify(spec.files)} matched no .onnx file in ${srcDir}`, { field: 'quantize.files', expected: `globs matching some of: ${onnx.join(', ') || '(no .onnx files)'}`, hint: 'fix the patterns or the model files list' });
    return hit;
  }
  for (const d of ['onnx/model.onnx', 'model.onnx']) if (onnx.includes(d)) return [d];
  if (onnx.length === 1) return onnx;
  throw new InputError(`cannot tell which ONNX file of ${srcDir} to quantize (found ${onnx.length}: ${onnx.slice(0, 8).join(', ')})`, {
    field: 'quantize.files', expected: 'onnx/model.onnx, model.onnx, a single .onnx file, or quantize.files globs', hint: 'list the files to quantize under quantize.files',
  });
}

/** Where transformers.js looks for the quantized variant of `rel`; a root-level model.onnx moves into onnx/. */
export function outputPathFor(rel: string, dtype: OnnxDtype): string {
  const dir = rel === 'model.onnx' ? 'onnx' : posix.dirname(rel);
  const name = `${posix.basename(rel, '.onnx')}${DTYPE_SUFFIX[dtype]}.onnx`;
  return dir === '.' ? name : `${dir}/${name}`;
}

async function readConfig(srcDir: string): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await readFile(join(srcDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * transformers.js fetches `<file>_data` only when config.json's `transformers.js_config.use_external_data_format`
 * says so (per file name: the number of data chunks); bake writes one chunk per file.
 */
async function declareExternalData(outDir: string, files: string[]): Promise<void> {
  const file = join(outDir, 'config.json');
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return; // not a transformers.js model folder
  }
  const tjs = (typeof config['transformers.js_config'] === 'object' && config['transformers.js_config'] !== null ? config['transformers.js_config'] : {}) as Record<string, unknown>;
  const current = tjs.use_external_data_format;
  if (current === true) return;
  const perFile = (typeof current === 'object' && current !== null ? { ...(current as Record<string, unknown>) } : {}) as Record<string, unknown>;
  for (const f of files) perFile[f] = 1;
  config['transformers.js_config'] = { ...tjs, use_external_data_format: perFile };
  await writeFileAtomic(file, JSON.stringify(config, null, 2) + '\n');
}

/** Parameters as transformers.js's q8 export picks them, overridden by whatever the recipe sets. */
export function resolveParams(spec: OnnxQuantSpec, model: ModelProto, hints: { task?: string; modelType?: string }): Record<string, unknown> & DynamicParams & { dtype: OnnxDtype; mode: 'dynamic' | 'static' | 'fp16' } {
  const field = (f: string) => `quantize.${f}`;
  if (spec.format !== 'onnx-int8' && spec.format !== 'onnx-fp16') throw new InputError(`quantize.format ${String(spec.format)} is not an ONNX format`, { field: field('format'), expected: 'onnx-int8 or onnx-fp16' });
  if (spec.format === 'onnx-fp16') {
    if (spec.dtype && spec.dtype !== 'fp16') throw new InputError(`quantize.dtype ${spec.dtype} does not fit format onnx-fp16`, { field: field('dtype'), expected: 'fp16 (or leave dtype out)' });
    return { dtype: 'fp16', mode: 'fp16', weightType: 'int8', perChannel: false, symmetric: true, reduceRange: false, opTypes: [] };
  }
  if (spec.dtype === 'fp16') throw new InputError('quantize.dtype fp16 needs format onnx-fp16', { field: field('dtype'), expected: 'q8, int8 or uint8 for onnx-int8', hint: 'set format: onnx-fp16' });
  const dtype: OnnxDtype = spec.dtype ?? (spec.weight_type === 'uint8' ? 'uint8' : spec.weight_type === 'int8' ? 'int8' : 'q8');
  if (spec.weight_type && (dtype === 'int8' || dtype === 'uint8') && spec.weight_type !== dtype) {
    throw new InputError(`quantize.weight_type ${spec.weight_type} contradicts dtype ${dtype}`, { field: field('weight_type'), expected: `${dtype} or no weight_type` });
  }
  const ops = opCounts(model);
  const convLike = UINT8_WEIGHT_OPS.some((op) => ops[op]);
  const weightType = spec.weight_type ?? (dtype === 'int8' ? 'int8' : dtype === 'uint8' ? 'uint8' : convLike ? 'uint8' : 'int8');
  const encoder = (hints.modelType !== undefined && ENCODER_MODEL_TYPES.has(hints.modelType)) || (hints.task !== undefined && ENCODER_TASKS.has(hints.task));
  const mode = spec.mode ?? 'dynamic';
  const perChannel = spec.per_channel ?? encoder;
  return {
    dtype,
    mode,
    weightType,
    perChannel,
    // onnxruntime: signed weights are symmetric unless told otherwise.
    symmetric: spec.symmetric ?? weightType === 'int8',
    reduceRange: spec.reduce_range ?? encoder,
    opTypes: spec.op_types ?? (mode === 'static' ? STATIC_DEFAULT_OPS : DYNAMIC_DEFAULT_OPS),
    nodesInclude: spec.nodes_include,
    nodesExclude: spec.nodes_exclude,
  };
}

/**
 * Quantizes the ONNX model(s) of `srcDir` into `outDir` per the recipe's `quantize:` block.
 * outDir receives the quantized file(s) under transformers.js's names plus every non-ONNX file of srcDir.
 */
export async function quantizeOnnxModel(srcDir: string, outDir: string, spec: OnnxQuantSpec,
  opts: { task?: string; onEvent?: (e: QuantizeEvent) => void; calibrationTexts?: string[]; inputs?: GenerateOptions; externalData?: boolean; dataDir?: string } = {}): Promise<QuantizeResult> {
  const all = await listFiles(srcDir);
  const files = selectOnnxFiles(all, spec, srcDir);
  const config = await readConfig(srcDir);
  const modelType = typeof config?.model_type === 'string' ? config.model_type : undefined;
  const emit = (type: string, message: string) => opts.onEvent?.({ type, message });
  const outputs: string[] = [];
  const keptFloat: KeptFloat[] = [];
  const params: Record<string, unknown> = {};
  const externalFiles: string[] = [];
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    emit('warning', message);
  };
  if (spec.calibration?.data && (spec.format !== 'onnx-int8' || (spec.mode ?? 'dynamic') !== 'static')) {
    throw new InputError('quantize.calibration.data is read by static quantization only', {
      field: 'quantize.calibration.data', expected: 'mode: static with format onnx-int8', hint: 'set quantize.mode: static, or move the samples to verify.data',
    });
  }
  for (const rel of files) {
    const src = safeJoin(srcDir, rel)!;
    emit('read', `reading ${rel}`);
    let model = await readOnnx(src);
    const p = resolveParams(spec, model, { task: opts.task, modelType });
    // Folding writes one protobuf: models near the 2 GiB limit are quantized as they are.
    const preprocess = p.mode !== 'fp16' && (spec.preprocess ?? true) && modelTensorBytes(model) < 1.5 * 2 ** 30;
    if (preprocess) {
      emit('preprocess', `folding constants in ${rel} (onnxruntime basic optimizations)`);
      model = await foldConstants(src);
    }
    const outRel = outputPathFor(rel, p.dtype);
    const before = opCounts(model);
    let result: { keptFloat: KeptFloat[]; quantized: Record<string, number>; calibration?: CalibrationInputs };
    if (p.mode === 'fp16') {
      emit('convert', `converting ${rel} to float16 (float inputs and outputs kept)`);
      result = convertToFloat16(model);
    } else if (p.mode === 'static') {
      emit('calibrate', `calibrating ${rel} (MinMax)`);
      result = await quantizeStatic(model, p, {
        samples: spec.calibration?.samples, texts: opts.calibrationTexts, modelDir: srcDir, task: opts.task, inputs: opts.inputs ?? fromSpec(spec.calibration?.inputs),
        data: spec.calibration?.data, dataDir: opts.dataDir, file: rel,
      });
    } else {
      emit('quantize', `quantizing ${rel} (dynamic, ${p.weightType} weights${p.perChannel ? ', per channel' : ''}${p.reduceRange ? ', reduce_range' : ''})`);
      result = quantizeDynamic(model, p);
    }
    const dest = safeJoin(outDir, outRel)!;
    const written = await writeOnnx(model, dest, { externalData: opts.externalData ?? 'auto', location: `${basename(dest)}_data` });
    if (written.files.length > 1) externalFiles.push(basename(dest));
    outputs.push(...written.files.map((f) => posix.join(posix.dirname(outRel), basename(f))));
    for (const k of result.keptFloat) keptFloat.push({ ...k, node: files.length > 1 ? `${rel}:${k.node}` : k.node });
    const { opTypes, nodesInclude, nodesExclude, ...rest } = p;
    params[rel] = { ...rest, preprocess, op_types: opTypes, nodes_include: nodesInclude, nodes_exclude: nodesExclude, output: outRel, rewritten: result.quantized, ops_before: before };
    if (result.calibration) (params[rel] as Record<string, unknown>).calibration_inputs = result.calibration;
    emit('written', `${outRel}: ${Object.entries(result.quantized).map(([k, v]) => `${v} ${k}`).join(', ') || 'nothing'} rewritten, ${result.keptFloat.length} node(s) kept float`);
    if (p.mode !== 'fp16' && !Object.keys(result.quantized).length) {
      const why = whyNothingQuantized(result.keptFloat, opTypes);
      (params[rel] as Record<string, unknown>).nothing_quantized = why;
      warn(`${rel}: nothing was quantized (${why.reason}); ${outRel} holds the float model under a quantized name. Fix: ${why.hint}`);
    } else if (result.calibration === 'generated') {
      warn(`${rel}: ${GENERATED_CALIBRATION_WARNING}`);
    }
  }
  // Everything that is not an ONNX payload travels along (config, tokenizer, licence...).
  for (const rel of all) {
    if (isOnnxPayload(rel)) continue;
    const dest = safeJoin(outDir, rel);
    if (!dest) continue;
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(join(srcDir, rel), dest);
  }
  if (externalFiles.length) await declareExternalData(outDir, externalFiles);
  return { outputs: outputs.sort(), keptFloat, params, warnings };
}
