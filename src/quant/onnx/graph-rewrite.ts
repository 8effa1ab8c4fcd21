// Shared machinery for quantization rewrites: finding constant weights through subgraph scopes, adding
// tensors to the graph that owns a weight, and dropping float weights nobody reads any more.
import {
  allGraphs, attr, DataType, freshName, makeTensor, tensorDims, tensorToFloat32, usedNames,
  type GraphProto, type ModelProto, type NodeProto, type TensorData, type TensorProto,
} from '../../formats/onnx/index.js';

export interface KeptFloat { node: string; op: string; reason: string }

export interface ConstRef {
  name: string;
  tensor: TensorProto;
  /** The graph holding the initializer or Constant node: new tensors derived from it go there too. */
  owner: GraphProto;
  kind: 'initializer' | 'constant';
}

export class RewriteContext {
  readonly names: Set<string>;
  readonly keptFloat: KeptFloat[] = [];
  /** Weight sources replaced by quantized copies: removed at the end when no longer read. */
  private readonly replaced: ConstRef[] = [];
  private readonly derived = new Map<string, unknown>();
  private readonly consts = new Map<GraphProto, Map<string, ConstRef>>();
  private readonly parents = new Map<GraphProto, GraphProto[]>();

  constructor(readonly model: ModelProto) {
    this.names = usedNames(model);
    for (const { graph, parents } of allGraphs(model)) {
      this.parents.set(graph, parents);
      this.consts.set(graph, localConsts(graph));
    }
  }

  graphs(): GraphProto[] {
    return [...this.parents.keys()];
  }

  /** The constant tensor named `name` as seen from `graph` (innermost scope first), if it is one. */
  constant(graph: GraphProto, name: string): ConstRef | undefined {
    if (!name) return undefined;
    const chain = [graph, ...[...(this.parents.get(graph) ?? [])].reverse()];
    for (const g of chain) {
      const hit = this.consts.get(g)?.get(name);
      if (hit) return hit;
      // A name produced by a node of an inner scope shadows outer constants.
      if (g.node.some((n) => n.output.includes(name)) || g.input.some((v) => v.name === name)) return undefined;
    }
    return undefined;
  }

  /** Float values of a FLOAT constant, or undefined for other types. */
  floatValues(ref: ConstRef): Float32Array | undefined {
    if (ref.tensor.data_type !== DataType.FLOAT) return undefined;
    return tensorToFloat32(ref.tensor, ref.name);
  }

  name(base: string): string {
    return freshName(this.names, base);
  }

  /** Adds an initializer to `graph` under a fresh name based on `base`; returns the name. */
  addInitializer(graph: GraphProto, base: string, dims: number[], data: TensorData, dataType?: number): string {
    const name = this.name(base);
    graph.initializer.push(makeTensor(name, dims, data, dataType));
    return name;
  }

  /** Memoizes tensors derived from one weight (a weight feeding several nodes is quantized once). */
  once<T>(ref: ConstRef, key: string, make: () => T): T {
    const k = `${ref.kind}:${ref.name}:${key}:${this.graphs().indexOf(ref.owner)}`;
    if (!this.derived.has(k)) {
      this.derived.set(k, make());
      this.replaced.push(ref);
    }
    return this.derived.get(k) as T;
  }

  /** Records that `ref` was replaced by a quantized copy (dropped at the end if nothing reads it). */
  markReplaced(ref: ConstRef): void {
    this.replaced.push(ref);
  }

  keep(node: NodeProto, reason: string): void {
    this.keptFloat.push({ node: node.name || node.output[0] || '?', op: node.op_type, reason });
  }

  /** Removes replaced float weights that no node, in any graph, reads any more. */
  dropUnused(): void {
    const read = new Set<string>();
    for (const g of this.graphs()) {
      for (const n of g.node) for (const i of n.input) read.add(i);
      for (const o of g.output) read.add(o.name);
    }
    for (const ref of this.replaced) {
      if (read.has(ref.name)) continue;
      if (ref.kind === 'initializer') {
        const i = ref.owner.initializer.findIndex((t) => t.name === ref.name);
        if (i >= 0) ref.owner.initializer.splice(i, 1);
      } else {
        const i = ref.owner.node.findIndex((n) => n.op_type === 'Constant' && n.output[0] === ref.name);
        if (i >= 0) ref.owner.node.splice(i, 1);
      }
    }
  }
}

function localConsts(graph: GraphProto): Map<string, ConstRef> {
  const out = new Map<string, ConstRef>();
  const inputs = new Set(graph.input.map((v) => v.name));
  for (const t of graph.initializer) {
    // An initializer that is also a graph input can be overridden at run time: not a constant.
    if (t.name && !inputs.has(t.name)) out.set(t.name, { name: t.name, tensor: t, owner: graph, kind: 'initializer' });
  }
  for (const n of graph.node) {
    if (n.op_type !== 'Constant' || (n.domain ?? '') !== '') continue;
    const value = attr(n, 'value')?.t;
    if (value && n.output[0]) out.set(n.output[0], { name: n.output[0], tensor: value, owner: graph, kind: 'constant' });
  }
  return out;
}

export { tensorDims };
