// Recipe gates over verification metrics: one table says which metric each gate bounds and how.
import type { VerifySpec } from '../recipe/types.js';
import { GateError } from '../util/errors.js';

export interface GateResult {
  gate: string;
  metric: string;
  comparison: '>=' | '<=';
  threshold: number;
  /** undefined when the runner did not measure this metric (the gate then fails). */
  value: number | undefined;
  passed: boolean;
  /** How to fix a failure when the runner knows better than the generic advice (e.g. nothing was quantized). */
  hint?: string;
}

/** Everything a verification run reports; stored as a JSON artifact and shown in manifests. */
export interface VerifyReport {
  model: string;
  format: string;
  /** Metric name -> value (cosine_mean, cosine_min, max_abs_error, top1_agreement, spearman, size_ratio,
   *  latency_ratio, peak_rss_bytes, ppl, ppl_base, kld_mean, same_top_pct...). */
  metrics: Record<string, number>;
  gates: GateResult[];
  passed: boolean;
  /** Runner-specific detail (per output, per file, ops left float...). */
  details?: Record<string, unknown>;
  /** True when some gate rests on generated inputs only (no real text or data): said loudly in `warnings`. */
  synthetic_inputs?: boolean;
  /** Sentences the CLI shows as warnings whenever the report is used (fresh or cached). */
  warnings?: string[];
}

const GATES: Record<string, { metric: string; comparison: '>=' | '<=' }> = {
  min_cosine: { metric: 'cosine_min', comparison: '>=' },
  min_mean_cosine: { metric: 'cosine_mean', comparison: '>=' },
  max_abs_error: { metric: 'max_abs_error', comparison: '<=' },
  max_mean_abs_error: { metric: 'mean_abs_error', comparison: '<=' },
  min_top1: { metric: 'top1_agreement', comparison: '>=' },
  min_spearman: { metric: 'spearman', comparison: '>=' },
  min_decision_agreement: { metric: 'decision_agreement', comparison: '>=' },
  max_cer: { metric: 'cer', comparison: '<=' },
  min_sequence_agreement: { metric: 'sequence_agreement', comparison: '>=' },
  max_size_ratio: { metric: 'size_ratio', comparison: '<=' },
  max_kld: { metric: 'kld_mean', comparison: '<=' },
  min_same_top: { metric: 'same_top_pct', comparison: '>=' },
  max_ppl_ratio: { metric: 'ppl_ratio', comparison: '<=' },
  // AWQ: its mean KLD over round-to-nearest's at the same group size (1 = no worse than plain rounding).
  max_kld_vs_rtn: { metric: 'kld_vs_rtn', comparison: '<=' },
  min_onnx_cosine: { metric: 'onnx_cosine_min', comparison: '>=' },
};

export const GATE_NAMES = Object.keys(GATES);

export function evaluateGates(spec: VerifySpec, metrics: Record<string, number>, hints: Record<string, string> = {}): GateResult[] {
  const results: GateResult[] = [];
  for (const [gate, { metric, comparison }] of Object.entries(GATES)) {
    const threshold = (spec as Record<string, unknown>)[gate];
    if (typeof threshold !== 'number') continue;
    const value = metrics[metric];
    const passed = value !== undefined && !Number.isNaN(value) && (comparison === '>=' ? value >= threshold : value <= threshold);
    results.push({ gate, metric, comparison, threshold, value, passed, ...(hints[gate] ? { hint: hints[gate] } : {}) });
  }
  return results;
}

export interface ReportNotes {
  /** Per gate name: the fix to suggest when it fails. */
  hints?: Record<string, string>;
  syntheticInputs?: boolean;
  warnings?: string[];
}

/** A runner's report: the recipe's gates over its metrics, plus gates of its own (a smoke check). */
export function buildReport(model: string, format: string, spec: VerifySpec, metrics: Record<string, number>, details: Record<string, unknown>, extraGates: GateResult[] = [], notes: ReportNotes = {}): VerifyReport {
  const gates = [...evaluateGates(spec, metrics, notes.hints), ...extraGates];
  const report: VerifyReport = { model, format, metrics, gates, passed: gates.every((g) => g.passed), details };
  if (notes.syntheticInputs !== undefined) report.synthetic_inputs = notes.syntheticInputs;
  if (notes.warnings?.length) report.warnings = notes.warnings;
  return report;
}

/** Throws a GateError for the first failed gate (names metric, value and threshold). */
export function enforceGates(model: string, report: VerifyReport): void {
  const failed = report.gates.find((g) => !g.passed);
  if (failed) throw new GateError(model, failed.metric, failed.value ?? Number.NaN, failed.threshold, failed.comparison, failed.hint);
}
