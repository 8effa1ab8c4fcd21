// fp16 conversion keeping float inputs, outputs and arithmetic: float32 weights are stored as float16 and
// cast back to float32 where they are read. Size halves; every op keeps the float32 types its kernels and
// type constraints expect (Resize scales, LSTM, ConstantOfShape...), so any graph that loaded still loads;
// onnxruntime folds the Casts at session creation. Tensors under MIN_ELEMENTS (scales, epsilons, shapes)
// stay float32: they cost nothing and some must be exact.
import {
  attr, DataType, elementCount, float32ToHalfBits, intAttr, makeNode, makeTensor, tensorDims, tensorToFloat32,
  type NodeProto,
} from '../../formats/onnx/index.js';
import type { ModelProto } from '../../formats/onnx/index.js';
import { RewriteContext, type KeptFloat } from './graph-rewrite.js';

const MIN_ELEMENTS = 64;

export function convertToFloat16(model: ModelProto): { keptFloat: KeptFloat[]; quantized: Record<string, number> } {
  const ctx = new RewriteContext(model);
  let tensors = 0;
  for (const graph of ctx.graphs()) {
    const inputs = new Set(graph.input.map((v) => v.name));
    const head: NodeProto[] = [];
    graph.initializer = graph.initializer.map((t) => {
      if (t.data_type !== DataType.FLOAT || !t.name || inputs.has(t.name) || elementCount(tensorDims(t)) < MIN_ELEMENTS) return t;
      const half = ctx.name(`${t.name}_fp16`);
      head.push(makeNode('Cast', [half], [t.name], ctx.name(`${t.name}_cast_to_float`), [intAttr('to', DataType.FLOAT)]));
      tensors++;
      return makeTensor(half, tensorDims(t), float32ToHalfBits(tensorToFloat32(t)));
    });
    const body: NodeProto[] = [];
    for (const node of graph.node) {
      const value = node.op_type === 'Constant' && (node.domain ?? '') === '' ? attr(node, 'value') : undefined;
      const t = value?.t;
      if (!value || !t || t.data_type !== DataType.FLOAT || elementCount(tensorDims(t)) < MIN_ELEMENTS) { body.push(node); continue; }
      const out = node.output[0]!;
      const half = ctx.name(`${out}_fp16`);
      value.t = makeTensor(t.name ?? '', tensorDims(t), float32ToHalfBits(tensorToFloat32(t)));
      node.output = [half];
      body.push(node, makeNode('Cast', [half], [out], ctx.name(`${out}_cast_to_float`), [intAttr('to', DataType.FLOAT)]));
      tensors++;
    }
    graph.node = [...head, ...body];
  }
  return { keptFloat: [], quantized: { tensors_to_fp16: tensors } };
}
