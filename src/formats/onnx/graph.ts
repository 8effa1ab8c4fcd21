// Walking an ONNX graph and its subgraphs (If/Loop/Scan bodies, function bodies), and small builders.
import { AttributeType, toNumber, type AttributeProto, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from './proto.js';

/** Subgraphs held by a node's attributes (If then/else, Loop/Scan body...). */
export function subgraphsOf(node: NodeProto): GraphProto[] {
  const out: GraphProto[] = [];
  for (const a of node.attribute ?? []) {
    if (a.g) out.push(a.g);
    for (const g of a.graphs ?? []) out.push(g);
  }
  return out;
}

/** Every graph of the model, outer first, with the chain of enclosing graphs (for name scoping). */
export function allGraphs(model: ModelProto): { graph: GraphProto; parents: GraphProto[] }[] {
  const out: { graph: GraphProto; parents: GraphProto[] }[] = [];
  const visit = (graph: GraphProto, parents: GraphProto[]) => {
    out.push({ graph, parents });
    for (const node of graph.node) for (const sub of subgraphsOf(node)) visit(sub, [...parents, graph]);
  };
  visit(model.graph, []);
  return out;
}

/** Every tensor stored in the model: initializers and Constant/attribute tensors, in all graphs and functions. */
export function allTensors(model: ModelProto): TensorProto[] {
  const out: TensorProto[] = [];
  const fromNodes = (nodes: NodeProto[]) => {
    for (const n of nodes) for (const a of n.attribute ?? []) {
      if (a.t) out.push(a.t);
      for (const t of a.tensors ?? []) out.push(t);
    }
  };
  for (const { graph } of allGraphs(model)) {
    out.push(...graph.initializer);
    fromNodes(graph.node);
  }
  for (const f of model.functions ?? []) fromNodes(f.node);
  return out;
}

/**
 * protobufjs decodes absent repeated fields as one shared frozen array; give every graph and node its own
 * arrays so graph rewrites can push and splice.
 */
export function ownArrays(model: ModelProto): void {
  const own = (obj: Record<string, unknown>, keys: string[]) => {
    for (const k of keys) if (!Object.prototype.hasOwnProperty.call(obj, k) || !Array.isArray(obj[k]) || Object.isFrozen(obj[k])) obj[k] = [...((obj[k] as unknown[]) ?? [])];
  };
  own(model as Record<string, unknown>, ['opset_import', 'metadata_props', 'functions']);
  for (const { graph } of allGraphs(model)) {
    own(graph as Record<string, unknown>, ['node', 'initializer', 'input', 'output', 'value_info']);
    for (const n of graph.node) own(n as Record<string, unknown>, ['input', 'output', 'attribute']);
  }
}

export function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}
export function attrInt(node: NodeProto, name: string, dflt: number): number {
  const a = attr(node, name);
  return a ? toNumber(a.i) : dflt;
}
export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a ? (a.ints ?? []).map(toNumber) : undefined;
}

export function intAttr(name: string, value: number): AttributeProto {
  return { name, type: AttributeType.INT, i: value };
}
export function intsAttr(name: string, values: number[]): AttributeProto {
  return { name, type: AttributeType.INTS, ints: values };
}
export function tensorAttr(name: string, t: TensorProto): AttributeProto {
  return { name, type: AttributeType.TENSOR, t };
}

export function makeNode(op_type: string, input: string[], output: string[], name: string, attribute: AttributeProto[] = [], domain = ''): NodeProto {
  return { op_type, input, output, name, attribute, domain };
}

/** The opset version the model imports for a domain ('' = ai.onnx), or undefined. */
export function opsetVersion(model: ModelProto, domain = ''): number | undefined {
  const entry = model.opset_import.find((o) => (o.domain ?? '') === domain || (domain === '' && o.domain === 'ai.onnx'));
  return entry ? toNumber(entry.version) : undefined;
}

/** Names used anywhere in the model, so new names never collide. */
export function usedNames(model: ModelProto): Set<string> {
  const names = new Set<string>();
  for (const { graph } of allGraphs(model)) {
    for (const v of [...graph.input, ...graph.output, ...graph.value_info]) names.add(v.name);
    for (const t of graph.initializer) if (t.name) names.add(t.name);
    for (const n of graph.node) {
      if (n.name) names.add(n.name);
      for (const x of [...n.input, ...n.output]) if (x) names.add(x);
    }
  }
  return names;
}

/** Returns a name based on `base` not yet in `names`, and records it. */
export function freshName(names: Set<string>, base: string): string {
  let name = base;
  for (let i = 1; names.has(name); i++) name = `${base}_${i}`;
  names.add(name);
  return name;
}

/** Op type counts over the whole model (subgraphs included): used in reports and tests. */
export function opCounts(model: ModelProto): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { graph } of allGraphs(model)) for (const n of graph.node) counts[n.op_type] = (counts[n.op_type] ?? 0) + 1;
  return counts;
}
