// Why a quantization run rewrote nothing, and what to change: read from the kept-float list the rewrites
// produce. A file nothing was done to still gets written under its quantized name (the folder stays
// loadable), so the reason has to be said loudly, and a failed size gate has to point at it.
import type { KeptFloat } from './graph-rewrite.js';

/** Kept-float reasons (as dynamic.ts and static.ts word them) and the change that lets those nodes be quantized. */
const FIXES: [RegExp, string][] = [
  [/opset \d+ < 11|needs opset 10/, 're-export the model with ONNX opset 11 or later (e.g. paddle2onnx --opset_version 11, torch.onnx.export(..., opset_version=13), or onnx.version_converter); dynamic mode needs opset 11, static mode opset 10 (13 for per-channel weights)'],
  [/Gemm is not quantized in dynamic mode/, 'set quantize.mode: static (QDQ quantizes Gemm), with real calibration samples under quantize.calibration.data'],
  [/ConvInteger has no int8-weight kernel/, 'leave quantize.weight_type out (or set uint8) for Conv, or use quantize.mode: static'],
  [/nodes_exclude|nodes_include/, 'widen quantize.nodes_include or narrow quantize.nodes_exclude'],
  [/no integer kernel|not rewritten by bake yet|no DynamicQuantizeLSTM form/, 'these weights have no integer form here: use format: onnx-fp16 to halve their size'],
  [/not observed during calibration/, 'make sure the calibration inputs reach these nodes (quantize.calibration.data, calibration.inputs dims)'],
  [/subgraphs/, 'use quantize.mode: dynamic, which rewrites nodes inside If/Loop/Scan bodies'],
  [/weight input is not a constant|is not float32|has rank|weight rank/, 'these nodes hold no constant float weight bake can quantize; keep quantize.preprocess on (constant folding) or use format: onnx-fp16'],
];

export interface NothingQuantized {
  /** What kept every candidate float, with node counts. */
  reason: string;
  /** What to change in the recipe or the model. */
  hint: string;
}

/**
 * The reason and fix for a file in which no node was rewritten: the kept-float reasons (most nodes first), or,
 * when nothing was even a candidate, that op_types matched no node with a constant weight.
 */
export function whyNothingQuantized(keptFloat: KeptFloat[], opTypes: string[]): NothingQuantized {
  const nodes = keptFloat.filter((k) => k.node !== '*');
  if (!nodes.length) {
    return {
      reason: `no ${opTypes.join('/')} node holds a constant float weight`,
      hint: 'bake quantizes Conv, MatMul, Gemm (static mode), Gather and LSTM weights: check quantize.op_types, or use format: onnx-fp16 to halve float weights',
    };
  }
  const byReason = new Map<string, Set<string>>();
  const counts = new Map<string, number>();
  for (const k of nodes) {
    if (!byReason.has(k.reason)) byReason.set(k.reason, new Set());
    byReason.get(k.reason)!.add(k.op);
    counts.set(k.reason, (counts.get(k.reason) ?? 0) + 1);
  }
  const ranked = [...counts].sort((a, b) => b[1] - a[1]);
  const reason = ranked.map(([r, n]) => `${n} ${[...byReason.get(r)!].sort().join('/')} node${n > 1 ? 's' : ''}: ${r}`).join('; ');
  const hints = [...new Set(ranked.map(([r]) => FIXES.find(([re]) => re.test(r))?.[1]).filter((h): h is string => h !== undefined))];
  return { reason, hint: hints.join('; ') || 'see the kept-float list in the quantize step\'s params' };
}
