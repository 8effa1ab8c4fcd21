// What a user does before bake can quantize an opset-9 paddle2onnx export: raise it to opset 11, as
// onnx's version converter would. Only the two ops of PP-OCR's recogniser that changed form between
// opsets 9 and 11 are handled (Clip and Slice moved their attributes to inputs); anything else refuses.
import { attr, DataType, makeTensor, toNumber, type ModelProto } from '../../src/formats/onnx/index.js';

const CHANGED_9_TO_11 = new Set(['Pad', 'Upsample', 'TopK', 'Resize', 'Dropout', 'Scan', 'Loop', 'If']);

export function raiseOpset9To11(model: ModelProto): ModelProto {
  const entry = model.opset_import.find((o) => (o.domain ?? '') === '')!;
  if (toNumber(entry.version) >= 11) return model;
  const g = model.graph;
  let k = 0;
  const constant = (dims: number[], values: number[], type: 'float' | 'int64') => {
    const name = `opset11_const_${k++}`;
    g.initializer.push(type === 'float' ? makeTensor(name, dims, Float32Array.from(values)) : makeTensor(name, dims, BigInt64Array.from(values.map(BigInt)), DataType.INT64));
    return name;
  };
  for (const n of g.node) {
    if (CHANGED_9_TO_11.has(n.op_type)) throw new Error(`raiseOpset9To11: ${n.op_type} is not handled`);
    if (n.op_type === 'Clip') {
      const lo = attr(n, 'min')?.f, hi = attr(n, 'max')?.f;
      n.input = [n.input[0]!, lo === undefined ? '' : constant([], [lo], 'float'), hi === undefined ? '' : constant([], [hi], 'float')];
      n.attribute = (n.attribute ?? []).filter((a) => a.name !== 'min' && a.name !== 'max');
    } else if (n.op_type === 'Slice' && attr(n, 'starts')) {
      const ints = (name: string) => (attr(n, name)?.ints ?? []).map((v) => toNumber(v));
      const starts = ints('starts'), ends = ints('ends'), axes = ints('axes');
      n.input = [n.input[0]!, constant([starts.length], starts, 'int64'), constant([ends.length], ends, 'int64'), ...(axes.length ? [constant([axes.length], axes, 'int64')] : [])];
      n.attribute = [];
    }
  }
  entry.version = 11;
  if (toNumber(model.ir_version ?? 0) < 6) model.ir_version = 6;
  return model;
}
