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
}

const GATES: Record<string, { metric: string; comparison: '>=' | '<=' }> = {
  min_cosine: { metric: 'cosine_min', comparison: '>=' },
  min_mean_cosine: { metric: 'cosine_mean', comparison: '>=' },
  max_abs_error: { metric: 'max_abs_error', comparison: '<=' },
  min_top1: { metric: 'top1_agreement', comparison: '>=' },
  min_spearman: { metric: 'spearman', comparison: '>=' },
  max_size_ratio: { metric: 'size_ratio', comparison: '<=' },
  max_kld: { metric: 'kld_mean', comparison: '<=' },
  min_same_top: { metric: 'same_top_pct', comparison: '>=' },
  max_ppl_ratio: { metric: 'ppl_ratio', comparison: '<=' },
};

export const GATE_NAMES = Object.keys(GATES);

export function evaluateGates(spec: VerifySpec, metrics: Record<string, number>): GateResult[] {
  const results: GateResult[] = [];
  for (const [gate, { metric, comparison }] of Object.entries(GATES)) {
    const threshold = (spec as Record<string, unknown>)[gate];
    if (typeof threshold !== 'number') continue;
    const value = metrics[metric];
    const passed = value !== undefined && !Number.isNaN(value) && (comparison === '>=' ? value >= threshold : value <= threshold);
    results.push({ gate, metric, comparison, threshold, value, passed });
  }
  return results;
}

/** A runner's report: the recipe's gates over its metrics, plus gates of its own (a smoke check). */
export function buildReport(model: string, format: string, spec: VerifySpec, metrics: Record<string, number>, details: Record<string, unknown>, extraGates: GateResult[] = []): VerifyReport {
  const gates = [...evaluateGates(spec, metrics), ...extraGates];
  return { model, format, metrics, gates, passed: gates.every((g) => g.passed), details };
}

/** Throws a GateError for the first failed gate (names metric, value and threshold). */
export function enforceGates(model: string, report: VerifyReport): void {
  const failed = report.gates.find((g) => !g.passed);
  if (failed) throw new GateError(model, failed.metric, failed.value ?? Number.NaN, failed.threshold, failed.comparison);
}
