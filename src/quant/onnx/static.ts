// Static quantization in QDQ form, as onnxruntime's quantize_static (QuantFormat.QDQ, CalibrationMethod.MinMax):
// activation tensors around quantized ops get QuantizeLinear -> DequantizeLinear pairs whose scale and zero
// point come from ranges seen on calibration inputs; weights are stored quantized and feed a
// DequantizeLinear; biases are int32 with scale x_scale * w_scale. onnxruntime fuses the pattern into
// QLinearConv / QLinearMatMul at load time. Works on the main graph; nodes in subgraphs stay float.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  allGraphs, attr, attrInt, DataType, decodeModel, encodeModel, intAttr, makeNode, opsetVersion, ownArrays, tensorDims,
  writeOnnx, type ModelProto, type NodeProto,
} from '../../formats/onnx/index.js';
import { BakeError, InputError } from '../../util/errors.js';
import type { DataSpec } from '../../recipe/types.js';
import { DEFAULT_EVAL_TEXTS, dataFeeds, generateInputs, modelInputs, textFeeds, type Feeds } from '../../model/onnx/index.js';
import type { DynamicParams } from './dynamic.js';
import { RewriteContext, type KeptFloat } from './graph-rewrite.js';
import { activationParams, quantizeWeight, roundHalfEven } from './weights.js';

export const STATIC_DEFAULT_OPS = ['Conv', 'MatMul', 'Gemm'];

/** Ops whose meaning changed between opsets 11 and 13; a model using them keeps its opset. */
const CHANGED_BY_OPSET_13 = new Set(['Softmax', 'LogSoftmax', 'Hardmax', 'Split', 'Squeeze', 'Unsqueeze', 'ReduceSum', 'Dropout']);

/**
 * Per-axis DequantizeLinear needs opset 13. onnxruntime's quantizer asks users to upgrade; bake raises
 * opsets 11-12 to 13 when no op in the model changed meaning in between, so per-channel stays possible.
 */
export function raiseOpsetTo13(model: ModelProto): { raised: boolean; reason?: string } {
  const v = opsetVersion(model) ?? 0;
  if (v >= 13) return { raised: true };
  if (v < 11) return { raised: false, reason: `opset ${v} is below 11` };
  for (const { graph } of allGraphs(model)) {
    for (const n of graph.node) {
      if ((n.domain ?? '') !== '') continue;
      if (CHANGED_BY_OPSET_13.has(n.op_type)) return { raised: false, reason: `${n.op_type} changed meaning in opset 13` };
      if (n.op_type === 'Resize' && attr(n, 'coordinate_transformation_mode')?.s?.toString() === 'tf_half_pixel_for_nn') return { raised: false, reason: 'Resize mode tf_half_pixel_for_nn was removed in opset 13' };
    }
  }
  const entry = model.opset_import.find((o) => (o.domain ?? '') === '' || o.domain === 'ai.onnx')!;
  entry.version = 13;
  if ((Number(model.ir_version ?? 0)) < 7) model.ir_version = 7;
  return { raised: true };
}

export interface CalibrationOptions {
  samples?: number;
  texts?: string[];
  /** Model folder (tokenizer for text models). */
  modelDir?: string;
  task?: string;
  /** Shapes for generated calibration inputs (and for the inputs real samples do not fill). */
  inputs?: Parameters<typeof generateInputs>[2];
  /** Real calibration samples (quantize.calibration.data) and the folder their path is relative to. */
  data?: DataSpec;
  dataDir?: string;
  /** The model's file as the user knows it (for errors). */
  file?: string;
}

/** Where calibration ranges came from: real samples, real text, or generated inputs (said in a warning). */
export type CalibrationInputs = 'data' | 'text' | 'generated';

/**
 * Observed [min, max] of each named tensor over the calibration inputs (MinMax). A model onnxruntime
 * refuses to load or run is bad input (InputError naming `file`): with quantize.preprocess on, the same
 * model would already have been refused while folding constants.
 */
export async function calibrateMinMax(model: ModelProto, tensors: string[], feedsList: Feeds[], file = 'the model'): Promise<Map<string, [number, number]>> {
  const probe = decodeModel(encodeModel(model));
  ownArrays(probe);
  const existing = new Set(probe.graph.output.map((o) => o.name));
  for (const t of tensors) if (!existing.has(t)) probe.graph.output.push({ name: t, type: { tensor_type: { elem_type: DataType.FLOAT } } });
  const dir = await mkdtemp(join(tmpdir(), 'bake-calib-'));
  const ranges = new Map<string, [number, number]>();
  try {
    const probeFile = join(dir, 'probe.onnx');
    await writeOnnx(probe, probeFile);
    const refused = (what: string, err: unknown) => new InputError(`onnxruntime cannot ${what} ${file} for static calibration: ${(err as Error).message.replace(probeFile, file)}`, {
      file, field: 'quantize.mode', cause: err, expected: 'a model onnxruntime-node can load and run',
      hint: 'check the model opens and runs in onnxruntime (generated calibration inputs take their shapes from quantize.calibration.inputs), or use quantize.mode: dynamic',
    });
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(probeFile, { logSeverityLevel: 3, graphOptimizationLevel: 'disabled' });
    } catch (err) {
      throw refused('load', err);
    }
    for (const feeds of feedsList) {
      let out: ort.InferenceSession.ReturnType;
      try {
        out = await session.run(feeds);
      } catch (err) {
        await session.release();
        throw refused('run', err);
      }
      for (const t of tensors) {
        const v = out[t];
        if (!v || v.type !== 'float32') continue;
        const data = v.data as Float32Array;
        let [lo, hi] = ranges.get(t) ?? [Infinity, -Infinity];
        for (let i = 0; i < data.length; i++) { const x = data[i]!; if (x < lo) lo = x; if (x > hi) hi = x; }
        ranges.set(t, [lo, hi]);
      }
    }
    await session.release();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return ranges;
}

async function calibrationFeeds(model: ModelProto, opts: CalibrationOptions): Promise<{ feeds: Feeds[]; kind: CalibrationInputs }> {
  const inputs = modelInputs(model);
  if (opts.data) {
    const d = await dataFeeds(inputs, opts.data, { field: 'quantize.calibration.data', baseDir: opts.dataDir ?? process.cwd() }, opts.inputs, opts.samples);
    return { feeds: d.feeds, kind: 'data' };
  }
  if (inputs.some((i) => i.name === 'input_ids')) {
    if (!opts.modelDir) throw new InputError('static quantization of a text model needs its folder (tokenizer)', { field: 'quantize.calibration' });
    const texts = opts.texts?.length ? opts.texts : [...DEFAULT_EVAL_TEXTS];
    return { feeds: await textFeeds(opts.modelDir, texts.slice(0, opts.samples ?? texts.length), inputs.map((i) => i.name)), kind: 'text' };
  }
  // A different seed than verification, so the gate is not measured on the calibration data itself.
  return { feeds: generateInputs(inputs, opts.samples ?? 16, opts.inputs, 9001), kind: 'generated' };
}

export async function quantizeStatic(model: ModelProto, p: DynamicParams, opts: CalibrationOptions = {}): Promise<{ keptFloat: KeptFloat[]; quantized: Record<string, number>; calibration?: CalibrationInputs }> {
  const ctx = new RewriteContext(model);
  const quantized: Record<string, number> = {};
  const graph = model.graph;
  const wanted = new Set(p.opTypes);
  const opset = raiseOpsetTo13(model);
  const perChannel = p.perChannel && opset.raised;
  if (p.perChannel && !opset.raised) ctx.keptFloat.push({ node: '*', op: '*', reason: `per-channel weights need opset 13 (${opset.reason}); weights quantized per tensor` });
  if ((opsetVersion(model) ?? 0) < 10) {
    for (const n of graph.node) if (wanted.has(n.op_type)) ctx.keep(n, 'QuantizeLinear needs opset 10 or later');
    return { keptFloat: ctx.keptFloat, quantized };
  }
  // Nodes in subgraphs are not calibrated (their tensors are not graph outputs): listed, left float.
  for (const { graph: g } of allGraphs(model).slice(1)) for (const n of g.node) if (wanted.has(n.op_type) && STATIC_DEFAULT_OPS.includes(n.op_type)) ctx.keep(n, 'static calibration does not reach inside subgraphs (If/Loop/Scan bodies)');

  // 1. Pick nodes and the activations around them.
  const targets: { node: NodeProto; axis: number | undefined; weight: NonNullable<ReturnType<RewriteContext['constant']>>; values: Float32Array }[] = [];
  for (const node of graph.node) {
    if ((node.domain ?? '') !== '' || !STATIC_DEFAULT_OPS.includes(node.op_type)) continue;
    if (!wanted.has(node.op_type)) continue;
    const name = node.name ?? '';
    if (p.nodesExclude?.includes(name)) { ctx.keep(node, 'excluded by nodes_exclude'); continue; }
    if (p.nodesInclude?.length && !p.nodesInclude.includes(name)) { ctx.keep(node, 'not listed in nodes_include'); continue; }
    const ref = ctx.constant(graph, node.input[1] ?? '');
    if (!ref) { if (node.op_type !== 'MatMul') ctx.keep(node, 'weight input is not a constant'); continue; }
    const values = ctx.floatValues(ref);
    if (!values) { ctx.keep(node, `weight ${ref.name} is not float32`); continue; }
    const dims = tensorDims(ref.tensor);
    if (node.op_type === 'Gemm' && (attrInt(node, 'transA', 0) !== 0)) { ctx.keep(node, 'Gemm with transA is not quantized'); continue; }
    if ((node.op_type === 'MatMul' || node.op_type === 'Gemm') && dims.length !== 2) { ctx.keep(node, `weight rank ${dims.length} is not 2`); continue; }
    const axis = !perChannel ? undefined : node.op_type === 'Conv' ? 0 : node.op_type === 'Gemm' && attrInt(node, 'transB', 0) ? 0 : 1;
    targets.push({ node, axis, weight: ref, values });
  }
  const activations = new Set<string>();
  for (const t of targets) { activations.add(t.node.input[0]!); activations.add(t.node.output[0]!); }

  // 2. Calibrate.
  const { feeds, kind } = await calibrationFeeds(model, opts);
  const ranges = await calibrateMinMax(model, [...activations], feeds, opts.file);
  const qparams = new Map<string, { scale: string; zp: string; scaleValue: number }>();
  for (const t of activations) {
    const r = ranges.get(t);
    if (!r) continue;
    const { scale, zeroPoint } = activationParams(r[0], r[1], 'uint8');
    const base = t.replace(/[^A-Za-z0-9_.]/g, '_');
    qparams.set(t, {
      scale: ctx.addInitializer(graph, `${base}_scale`, [], new Float32Array([scale])),
      zp: ctx.addInitializer(graph, `${base}_zero_point`, [], new Uint8Array([zeroPoint])),
      scaleValue: scale,
    });
  }

  // 3. Rewrite: weights -> quantized + DequantizeLinear; activations -> Q/DQ pairs shared by all readers.
  const dqOf = new Map<string, string>();
  const qdq = (t: string): NodeProto[] => {
    const q = qparams.get(t);
    if (!q) return [];
    const base = t.replace(/[^A-Za-z0-9_.]/g, '_');
    const qOut = ctx.name(`${base}_QuantizeLinear_Output`), dqOut = ctx.name(`${base}_DequantizeLinear_Output`);
    dqOf.set(t, dqOut);
    return [
      makeNode('QuantizeLinear', [t, q.scale, q.zp], [qOut], ctx.name(`${base}_QuantizeLinear`)),
      makeNode('DequantizeLinear', [qOut, q.scale, q.zp], [dqOut], ctx.name(`${base}_DequantizeLinear`)),
    ];
  };
  const byNode = new Map(targets.map((t) => [t.node, t]));
  const out: NodeProto[] = [];
  const graphInputs = new Set(graph.input.map((v) => v.name));
  for (const t of activations) if (graphInputs.has(t)) out.push(...qdq(t));
  for (const node of graph.node) {
    const target = byNode.get(node);
    if (target && !qparams.has(node.input[0]!)) {
      // The activation was never seen in calibration (not float, or not reached): the node stays float.
      ctx.keep(node, 'its input was not observed during calibration');
      byNode.delete(node);
    }
    const t = byNode.get(node);
    const x0 = node.input[0]!;
    node.input = node.input.map((x) => dqOf.get(x) ?? x);
    if (t) {
      const { weight, values, axis } = t;
      const dims = tensorDims(weight.tensor);
      const qw = quantizeWeight(values, dims, p.weightType, { symmetric: p.symmetric, reduceRange: p.reduceRange, axis });
      const wbase = weight.name.replace(/[^A-Za-z0-9_.]/g, '_');
      const sdims = axis === undefined ? [] : [dims[axis]!];
      const wq = ctx.addInitializer(graph, `${wbase}_quantized`, dims, qw.values, p.weightType === 'int8' ? DataType.INT8 : DataType.UINT8);
      const ws = ctx.addInitializer(graph, `${wbase}_scale`, sdims, qw.scales);
      const wz = ctx.addInitializer(graph, `${wbase}_zero_point`, sdims, qw.zeroPoints, p.weightType === 'int8' ? DataType.INT8 : DataType.UINT8);
      const wdq = ctx.name(`${wbase}_DequantizeLinear_Output`);
      out.push(makeNode('DequantizeLinear', [wq, ws, wz], [wdq], ctx.name(`${wbase}_DequantizeLinear`), axis === undefined ? [] : [intAttr('axis', axis)]));
      node.input[1] = wdq;
      ctx.markReplaced(weight);
      // Bias: int32, scale = x_scale * w_scale, zero point 0 (what QLinearConv expects).
      const biasRef = node.input[2] ? ctx.constant(graph, node.input[2]) : undefined;
      const biasValues = biasRef ? ctx.floatValues(biasRef) : undefined;
      const xScale = qparams.get(x0)?.scaleValue;
      const channels = axis === undefined ? 1 : dims[axis]!;
      if (biasRef && biasValues && xScale !== undefined && (channels === 1 || biasValues.length === channels)) {
        const bScales = new Float32Array(biasValues.length);
        const bq = new Int32Array(biasValues.length);
        for (let i = 0; i < biasValues.length; i++) {
          bScales[i] = Math.fround(xScale * qw.scales[channels === 1 ? 0 : i]!);
          bq[i] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, roundHalfEven(biasValues[i]! / bScales[i]!)));
        }
        const bbase = biasRef.name.replace(/[^A-Za-z0-9_.]/g, '_');
        const perBias = axis !== undefined;
        const bqName = ctx.addInitializer(graph, `${bbase}_quantized`, [biasValues.length], bq);
        const bsName = ctx.addInitializer(graph, `${bbase}_scale`, perBias ? [biasValues.length] : [], perBias ? bScales : bScales.subarray(0, 1));
        const bzName = ctx.addInitializer(graph, `${bbase}_zero_point`, perBias ? [biasValues.length] : [], new Int32Array(perBias ? biasValues.length : 1));
        const bdq = ctx.name(`${bbase}_DequantizeLinear_Output`);
        out.push(makeNode('DequantizeLinear', [bqName, bsName, bzName], [bdq], ctx.name(`${bbase}_DequantizeLinear`), perBias ? [intAttr('axis', 0)] : []));
        node.input[2] = bdq;
        ctx.markReplaced(biasRef);
      }
      quantized[node.op_type] = (quantized[node.op_type] ?? 0) + 1;
    }
    out.push(node);
    for (const o of node.output) if (activations.has(o)) out.push(...qdq(o));
  }
  graph.node = out;
  // Graph outputs keep the float tensor their producer writes; readers inside the graph see the DQ copy.
  ctx.dropUnused();
  return { keptFloat: ctx.keptFloat, quantized, calibration: kind };
}

