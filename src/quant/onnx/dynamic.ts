// Dynamic (QOperator / IntegerOps) quantization, as onnxruntime's quantize_dynamic rewrites a graph:
// activations are quantized at run time by DynamicQuantizeLinear (uint8), weights ahead of time.
//   MatMul(x, W)  -> DynamicQuantizeLinear(x) -> MatMulInteger -> Cast(float) -> Mul(x_scale * W_scale)
//   Conv(x, W, b) -> DynamicQuantizeLinear(x) -> ConvInteger   -> Cast(float) -> Mul(scale) [-> Add(b)]
//   Gather(E, i)  -> Gather(E_q, i) -> DequantizeLinear
//   LSTM(x, W, R) -> com.microsoft DynamicQuantizeLSTM (int8 W and R, stored transposed)
// Weights may be initializers or Constant nodes, in the main graph or any If/Loop/Scan body.
import { attrInt, DataType, intAttr, makeNode, opsetVersion, type GraphProto, type ModelProto, type NodeProto } from '../../formats/onnx/index.js';
import { RewriteContext, tensorDims, type ConstRef, type KeptFloat } from './graph-rewrite.js';
import { quantizeWeight, type QType } from './weights.js';

export interface DynamicParams {
  weightType: QType;
  perChannel: boolean;
  symmetric: boolean;
  reduceRange: boolean;
  opTypes: string[];
  nodesInclude?: string[];
  nodesExclude?: string[];
}

/** onnxruntime's default op list for quantize_dynamic. */
export const DYNAMIC_DEFAULT_OPS = ['Conv', 'MatMul', 'Attention', 'LSTM', 'Gather', 'Transpose', 'EmbedLayerNormalization'];

/** Ops that hold weights but that this rewrite (like onnxruntime's dynamic mode) leaves float. */
const UNQUANTIZED_WEIGHT_OPS: Record<string, string> = {
  Gemm: 'Gemm is not quantized in dynamic mode (onnxruntime IntegerOps semantics)',
  ConvTranspose: 'onnxruntime has no integer ConvTranspose kernel',
  GRU: 'GRU has no integer kernel in onnxruntime',
  RNN: 'RNN has no integer kernel in onnxruntime',
  Attention: 'fused com.microsoft Attention is not rewritten by bake yet',
  EmbedLayerNormalization: 'fused com.microsoft EmbedLayerNormalization is not rewritten by bake yet',
};

export function quantizeDynamic(model: ModelProto, params: DynamicParams): { keptFloat: KeptFloat[]; quantized: Record<string, number> } {
  const ctx = new RewriteContext(model);
  const quantized: Record<string, number> = {};
  const opset = opsetVersion(model) ?? 0;
  const wanted = new Set(params.opTypes);
  for (const graph of ctx.graphs()) {
    const out: NodeProto[] = [];
    const dql = new Map<string, [string, string, string]>();
    for (const node of graph.node) {
      const op = node.op_type;
      const domain = node.domain ?? '';
      const weighted = (domain === '' && (op === 'MatMul' || op === 'Conv' || op === 'Gather' || op === 'LSTM' || op in UNQUANTIZED_WEIGHT_OPS))
        || (domain === 'com.microsoft' && (op === 'Attention' || op === 'EmbedLayerNormalization'));
      if (!weighted) { out.push(node); continue; }
      const name = node.name ?? '';
      // Weight ops without an integer rewrite stay float and are always listed, with the reason.
      if (op in UNQUANTIZED_WEIGHT_OPS) { ctx.keep(node, UNQUANTIZED_WEIGHT_OPS[op]!); out.push(node); continue; }
      if (!wanted.has(op)) { out.push(node); continue; }
      if (params.nodesExclude?.includes(name)) { ctx.keep(node, 'excluded by nodes_exclude'); out.push(node); continue; }
      if (params.nodesInclude?.length && !params.nodesInclude.includes(name)) { ctx.keep(node, 'not listed in nodes_include'); out.push(node); continue; }
      if (opset < 11) { ctx.keep(node, `model opset ${opset} < 11 has no DynamicQuantizeLinear`); out.push(node); continue; }
      const replacement = op === 'MatMul' ? rewriteMatMul(ctx, graph, node, params, dql)
        : op === 'Conv' ? rewriteConv(ctx, graph, node, params, dql)
        : op === 'LSTM' ? rewriteLstm(ctx, graph, node, params)
        : rewriteGather(ctx, graph, node);
      if (typeof replacement === 'string') {
        // Gathers and MatMuls over activations only (shape bookkeeping, attention scores) hold no weights:
        // onnxruntime (MatMulConstBOnly) passes them silently, so they are not listed as kept float.
        if (!/^(data|weight) input is not a constant/.test(replacement) || (op !== 'MatMul' && op !== 'Gather')) ctx.keep(node, replacement);
        out.push(node);
      } else {
        out.push(...replacement);
        quantized[op] = (quantized[op] ?? 0) + 1;
      }
    }
    graph.node = out;
  }
  ctx.dropUnused();
  if (quantized.LSTM && !model.opset_import.some((o) => o.domain === 'com.microsoft')) model.opset_import.push({ domain: 'com.microsoft', version: 1 });
  return { keptFloat: ctx.keptFloat, quantized };
}

const qDataType = (t: QType) => (t === 'int8' ? DataType.INT8 : DataType.UINT8);

/** Shares one DynamicQuantizeLinear per activation tensor and graph (Q, K and V read the same input). */
function dynamicQuantize(ctx: RewriteContext, input: string, out: NodeProto[], cache: Map<string, [string, string, string]>): [string, string, string] {
  const hit = cache.get(input);
  if (hit) return hit;
  const base = input.replace(/[^A-Za-z0-9_.]/g, '_');
  const names: [string, string, string] = [ctx.name(`${base}_quantized`), ctx.name(`${base}_scale`), ctx.name(`${base}_zero_point`)];
  out.push(makeNode('DynamicQuantizeLinear', [input], names, ctx.name(`${base}_QuantizeLinear`)));
  cache.set(input, names);
  return names;
}

function weightRef(ctx: RewriteContext, graph: GraphProto, name: string | undefined): { ref: ConstRef; values: Float32Array } | string {
  const ref = name ? ctx.constant(graph, name) : undefined;
  if (!ref) return 'weight input is not a constant (initializer or Constant node)';
  const values = ctx.floatValues(ref);
  if (!values) return `weight ${ref.name} is not float32 (data type ${ref.tensor.data_type})`;
  return { ref, values };
}

function rewriteMatMul(ctx: RewriteContext, graph: GraphProto, node: NodeProto, p: DynamicParams, dql: Map<string, [string, string, string]>): NodeProto[] | string {
  const w = weightRef(ctx, graph, node.input[1]);
  if (typeof w === 'string') return w;
  const dims = tensorDims(w.ref.tensor);
  if (dims.length !== 2) return `weight ${w.ref.name} has rank ${dims.length}; MatMulInteger weights must be 2-D`;
  const axis = p.perChannel ? 1 : undefined;
  const q = ctx.once(w.ref, `mm:${p.weightType}:${axis}:${p.symmetric}:${p.reduceRange}`, () => {
    const qw = quantizeWeight(w.values, dims, p.weightType, { symmetric: p.symmetric, reduceRange: p.reduceRange, axis });
    const sdims = axis === undefined ? [] : [dims[1]!];
    return {
      w: ctx.addInitializer(w.ref.owner, `${w.ref.name}_quantized`, dims, qw.values, qDataType(p.weightType)),
      scale: ctx.addInitializer(w.ref.owner, `${w.ref.name}_scale`, sdims, qw.scales),
      zp: ctx.addInitializer(w.ref.owner, `${w.ref.name}_zero_point`, sdims, qw.zeroPoints, qDataType(p.weightType)),
    };
  });
  const out: NodeProto[] = [];
  const [xq, xs, xzp] = dynamicQuantize(ctx, node.input[0]!, out, dql);
  const base = (node.name || node.output[0]!).replace(/[^A-Za-z0-9_.]/g, '_');
  const mmOut = ctx.name(`${base}_output_quantized`);
  const castOut = ctx.name(`${base}_output_quantized_cast_output`);
  const scale = ctx.name(`${base}_scales_mul_output`);
  out.push(
    makeNode('MatMulInteger', [xq, q.w, xzp, q.zp], [mmOut], ctx.name(`${base}_quant`)),
    makeNode('Cast', [mmOut], [castOut], ctx.name(`${base}_output_quantized_cast`), [intAttr('to', DataType.FLOAT)]),
    makeNode('Mul', [xs, q.scale], [scale], ctx.name(`${base}_scales_mul`)),
    makeNode('Mul', [castOut, scale], [node.output[0]!], ctx.name(`${base}_output_scale_mul`)),
  );
  return out;
}

function rewriteConv(ctx: RewriteContext, graph: GraphProto, node: NodeProto, p: DynamicParams, dql: Map<string, [string, string, string]>): NodeProto[] | string {
  const w = weightRef(ctx, graph, node.input[1]);
  if (typeof w === 'string') return w;
  const dims = tensorDims(w.ref.tensor);
  if (dims.length < 3) return `weight ${w.ref.name} has rank ${dims.length}; Conv weights are [M, C/group, k...]`;
  // onnxruntime's CPU ConvInteger takes uint8 weights only (hence transformers.js's uint8 rule for conv nets).
  if (p.weightType !== 'uint8') return 'onnxruntime ConvInteger has no int8-weight kernel; use weight_type uint8 to quantize Conv';
  const bias = node.input[2] ? weightRef(ctx, graph, node.input[2]) : undefined;
  if (typeof bias === 'string') return `bias: ${bias}`;
  const m = dims[0]!;
  // onnxruntime's ConvInteger rejects per-channel zero points ("Non per-tensor quantization is not supported"),
  // so dynamic Conv is per tensor whatever per_channel says; static QDQ mode has per-channel Conv.
  const axis = undefined as number | undefined;
  const spatial = dims.length - 2;
  const q = ctx.once(w.ref, `conv:${p.weightType}:${axis}:${p.symmetric}:${p.reduceRange}`, () => {
    const qw = quantizeWeight(w.values, dims, p.weightType, { symmetric: p.symmetric, reduceRange: p.reduceRange, axis });
    // Per-channel scales are shaped [M, 1, 1...] so they broadcast over the [N, M, H, W] output.
    const sdims = axis === undefined ? [] : [m, ...Array(spatial).fill(1)];
    return {
      w: ctx.addInitializer(w.ref.owner, `${w.ref.name}_quantized`, dims, qw.values, qDataType(p.weightType)),
      scale: ctx.addInitializer(w.ref.owner, `${w.ref.name}_scale`, sdims, qw.scales),
      zp: ctx.addInitializer(w.ref.owner, `${w.ref.name}_zero_point`, axis === undefined ? [] : [m], qw.zeroPoints, qDataType(p.weightType)),
    };
  });
  const out: NodeProto[] = [];
  const [xq, xs, xzp] = dynamicQuantize(ctx, node.input[0]!, out, dql);
  const base = (node.name || node.output[0]!).replace(/[^A-Za-z0-9_.]/g, '_');
  const convOut = ctx.name(`${base}_output_quantized`);
  const castOut = ctx.name(`${base}_output_quantized_cast_output`);
  const scale = ctx.name(`${base}_scales_mul_output`);
  const scaled = bias ? ctx.name(`${base}_output_scaled`) : node.output[0]!;
  const convAttrs = (node.attribute ?? []).filter((a) => ['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides'].includes(a.name));
  out.push(
    makeNode('ConvInteger', [xq, q.w, xzp, q.zp], [convOut], ctx.name(`${base}_quant`), convAttrs),
    makeNode('Cast', [convOut], [castOut], ctx.name(`${base}_output_quantized_cast`), [intAttr('to', DataType.FLOAT)]),
    makeNode('Mul', [xs, q.scale], [scale], ctx.name(`${base}_scales_mul`)),
    makeNode('Mul', [castOut, scale], [scaled], ctx.name(`${base}_output_scale_mul`)),
  );
  if (bias) {
    const b = ctx.once(bias.ref, `bias:${spatial}`, () => ctx.addInitializer(bias.ref.owner, `${bias.ref.name}_reshaped`, [m, ...Array(spatial).fill(1)], bias.values));
    out.push(makeNode('Add', [scaled, b], [node.output[0]!], ctx.name(`${base}_bias_add`)));
  }
  return out;
}

function rewriteGather(ctx: RewriteContext, graph: GraphProto, node: NodeProto): NodeProto[] | string {
  const w = weightRef(ctx, graph, node.input[0]);
  if (typeof w === 'string') return w.replace('weight', 'data');
  const dims = tensorDims(w.ref.tensor);
  // Embedding tables take the activation type (uint8, asymmetric) per tensor, like onnxruntime's QGather.
  const q = ctx.once(w.ref, 'gather', () => {
    const qw = quantizeWeight(w.values, dims, 'uint8', { symmetric: false, reduceRange: false });
    return {
      w: ctx.addInitializer(w.ref.owner, `${w.ref.name}_quantized`, dims, qw.values, DataType.UINT8),
      scale: ctx.addInitializer(w.ref.owner, `${w.ref.name}_scale`, [], qw.scales),
      zp: ctx.addInitializer(w.ref.owner, `${w.ref.name}_zero_point`, [], qw.zeroPoints, DataType.UINT8),
    };
  });
  const base = (node.name || node.output[0]!).replace(/[^A-Za-z0-9_.]/g, '_');
  const gathered = ctx.name(`${base}_output_quantized`);
  return [
    makeNode('Gather', [q.w, node.input[1]!], [gathered], ctx.name(`${base}_quant`), node.attribute ?? []),
    makeNode('DequantizeLinear', [gathered, q.scale, q.zp], [node.output[0]!], ctx.name(`${base}_dequantize`)),
  ];
}

const LSTM7_ATTRIBUTES = ['activation_alpha', 'activation_beta', 'activations', 'clip', 'direction', 'hidden_size', 'input_forget'];

/**
 * LSTM -> com.microsoft DynamicQuantizeLSTM (onnxruntime operators/lstm.py): W [D, 4H, I] and R [D, 4H, H]
 * quantized to int8 per row of 4H (per channel) or per direction, then stored transposed ([D, I, 4H]).
 */
function rewriteLstm(ctx: RewriteContext, graph: GraphProto, node: NodeProto, p: DynamicParams): NodeProto[] | string {
  // DynamicQuantizeLSTM has LSTM-7's attributes: no `layout` (opset 14), so only the default layout maps.
  if (attrInt(node, 'layout', 0) !== 0) return 'LSTM with layout=1 (batch first) has no DynamicQuantizeLSTM form';
  const refs = [weightRef(ctx, graph, node.input[1]), weightRef(ctx, graph, node.input[2])];
  for (const r of refs) if (typeof r === 'string') return r;
  const [w, r] = refs as { ref: ConstRef; values: Float32Array }[];
  const q = [w!, r!].map((x) => {
    const dims = tensorDims(x.ref.tensor);
    if (dims.length !== 3) return `${x.ref.name} has rank ${dims.length}; LSTM weights are [directions, 4*hidden, size]`;
    const [d, rows, cols] = dims as [number, number, number];
    return ctx.once(x.ref, `lstm:${p.perChannel}:${p.reduceRange}`, () => {
      // onnxruntime quantizes LSTM weights to int8 whatever weight_type says (the kernel is u8s8).
      const qw = quantizeWeight(x.values, p.perChannel ? [d * rows, cols] : [d, rows * cols], 'int8', { symmetric: p.weightType === 'int8' ? p.symmetric : false, reduceRange: p.reduceRange, axis: 0 });
      const transposed = new Int8Array(qw.values.length);
      for (let k = 0; k < d; k++) for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) transposed[k * rows * cols + j * rows + i] = qw.values[k * rows * cols + i * cols + j]!;
      const sdims = p.perChannel ? [d, rows] : [d];
      return {
        w: ctx.addInitializer(x.ref.owner, `${x.ref.name}_quantized`, [d, cols, rows], transposed, DataType.INT8),
        scale: ctx.addInitializer(x.ref.owner, `${x.ref.name}_scale`, sdims, qw.scales),
        zp: ctx.addInitializer(x.ref.owner, `${x.ref.name}_zero_point`, sdims, qw.zeroPoints, DataType.INT8),
      };
    });
  });
  for (const x of q) if (typeof x === 'string') return x;
  const [qw, qr] = q as { w: string; scale: string; zp: string }[];
  const inputs = [node.input[0]!, qw!.w, qr!.w, ...[3, 4, 5, 6, 7].map((i) => node.input[i] ?? ''), qw!.scale, qw!.zp, qr!.scale, qr!.zp];
  const attrs = (node.attribute ?? []).filter((a) => LSTM7_ATTRIBUTES.includes(a.name));
  return [makeNode('DynamicQuantizeLSTM', inputs, [...node.output], ctx.name(`${node.name || node.output[0]}_quant`), attrs, 'com.microsoft')];
}
