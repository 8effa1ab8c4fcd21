// The build report as data: per model what quantization did (sizes, metrics against gates, what stayed in
// higher precision and why, the step keys), per image what it holds (digest, tags, layers). Built from the
// pipeline API's typed results. Everything here is a function of the inputs, except `timings` (cache hits,
// wall times, latency and memory), which is kept apart so it never changes a digest: `withoutTimings`
// is what is attached to images and what the image annotations summarize.
import type { LockEntry } from '../lock/types.js';
import type { StepName } from '../pipeline/events.js';
import type { QuantSpec, Recipe } from '../recipe/types.js';
import type { GateResult, VerifyReport } from '../verify/gates.js';

export const REPORT_SCHEMA = 'bake.report.v1';

export interface BakeReport {
  schema: typeof REPORT_SCHEMA;
  recipe: { name: string; description?: string; image: { name: string; version: string } };
  bake: { version: string; toolchain: Record<string, string> };
  /** False when any model's gate failed. */
  passed: boolean;
  summary: { models: number; verified: number; gates: number; failed_gates: number; failed_models: string[] };
  models: ModelReport[];
  targets: TargetReport[];
  /** What depends on the run, not on the inputs: never part of what ships or is pushed. */
  timings?: Timings;
}

export interface ModelReport {
  id: string;
  format: string;
  /** What tells this model from others of the same source: the GGUF type, INT8, FP16 or original. */
  variant: string;
  task?: string;
  /** `repo@commit`: models made from the same source are variants of one another. */
  group: string;
  source: { type: 'hub' | 'path'; repo: string; revision: string; commit: string; bytes: number; files: { path: string; size: number; sha256: string }[] };
  quantized?: { bytes: number; files: string[]; size_ratio: number };
  quantization: { params?: unknown; kept: KeptGroup[] };
  /** Digests of the data quantize and verify read (calibration and eval samples). */
  inputs: InputDigest[];
  verification: {
    status: 'passed' | 'failed' | 'not verified';
    metrics: Record<string, number>;
    gates: GateResult[];
    synthetic_inputs?: boolean;
    warnings?: string[];
    kld_histogram?: { edges: number[]; counts: number[] };
  };
  steps: { step: StepName; key?: string; artifact?: string }[];
}

/** Ops (ONNX) or tensors (GGUF) left in higher precision, grouped by the reason. */
export interface KeptGroup {
  kind: 'ops' | 'tensors';
  /** ONNX op type, or the GGUF tensor type kept. */
  what: string;
  reason: string;
  count: number;
  items: string[];
}

export interface TargetReport {
  name: string;
  server: string;
  models: string[];
  built: boolean;
  /** Why there is no image (a model's gate failed). */
  reason?: string;
  manifest_digest?: string;
  image_id?: string;
  tags: string[];
  size?: number;
  layers: { what: string; digest: string; size: number }[];
  /** Manifest annotations summarizing the gates (the same as on the image). */
  gates?: Record<string, string>;
}

export interface Timings {
  steps: { model: string; step: StepName; cached: boolean; key: string; artifact: string; ms?: number }[];
  /** Latency, peak memory and other run-dependent measurements of verify, per model. */
  metrics: Record<string, Record<string, number>>;
  targets: { name: string; startup_ms?: number }[];
}

/** What the report is built from: the pipeline API's results (structurally; no import of the API). */
export interface ReportInput {
  recipe: Pick<Recipe, 'name' | 'description' | 'image' | 'models' | 'targets'>;
  entries: Map<string, LockEntry>;
  bakeVersion: string;
  toolchain: Record<string, string>;
  models: ModelInput[];
  images: ImageInput[];
  /** Container start times per target, when something measured them. */
  startup?: Record<string, number>;
}

/** What the quantizer recorded: its parameters and what it left in higher precision (and why). */
export type QuantizationRecord = { params?: unknown; keptFloat?: { node: string; op: string; reason: string }[]; kept?: { type: string; reason: string; tensors: string[] }[] };

/** The digest of calibration or eval data a step read. */
export type InputDigest = { role: 'calibration' | 'eval'; kind: string; sha256: string };

export interface ModelInput {
  id: string;
  format: string;
  steps: { step: StepName; key: string; artifact: string; cached: boolean; ms?: number }[];
  /** Bytes of the locked source files and of what ships. */
  sourceBytes: number;
  quantizedBytes?: number;
  files?: string[];
  report?: VerifyReport;
  /** What the quantizer recorded: its parameters and what it left in higher precision (and why). */
  quantization?: QuantizationRecord;
  /** Digests of the calibration and eval data the steps read. */
  inputs?: InputDigest[];
  /** Set when a gate failed and the run only recorded it (`bake report`); the chain stopped after verify. */
  gateFailed?: boolean;
}

export interface ImageInput {
  target: string;
  server: string;
  tags: string[];
  manifestDigest?: string;
  imageId?: string;
  size?: number;
  layers?: { what: string; digest: string; size: number }[];
  annotations?: Record<string, string>;
}

/** Metrics that vary from run to run (the same rule as the model manifest's). */
export function isTimingMetric(name: string): boolean {
  return /latency|rss|_ms$|seconds|time/.test(name);
}

export function variantOf(quantize: QuantSpec): string {
  if (quantize.format === 'gguf') return quantize.type;
  if (quantize.format === 'onnx-int8') return quantize.mode === 'static' ? 'INT8 static' : 'INT8';
  if (quantize.format === 'onnx-fp16') return 'FP16';
  return 'original';
}

function keptGroups(q: ModelInput['quantization']): KeptGroup[] {
  const groups = new Map<string, KeptGroup>();
  for (const k of q?.keptFloat ?? []) {
    const key = `${k.op}\0${k.reason}`;
    if (!groups.has(key)) groups.set(key, { kind: 'ops', what: k.op, reason: k.reason, count: 0, items: [] });
    const g = groups.get(key)!;
    g.count++;
    g.items.push(k.node);
  }
  for (const k of q?.kept ?? []) groups.set(`${k.type}\0${k.reason}`, { kind: 'tensors', what: k.type, reason: k.reason, count: k.tensors.length, items: [...k.tensors] });
  return [...groups.values()];
}

function modelReport(input: ReportInput, m: ModelInput): ModelReport {
  const spec = input.recipe.models.find((x) => x.id === m.id);
  const entry = input.entries.get(m.id);
  if (!spec || !entry) throw new Error(`internal: report for ${m.id}, which the recipe or lock does not have`);
  const r = m.report;
  const histogram = r?.details?.kld_histogram as ModelReport['verification']['kld_histogram'] | undefined;
  const metrics = Object.fromEntries(Object.entries(r?.metrics ?? {}).filter(([k, v]) => !isTimingMetric(k) && Number.isFinite(v)).sort(([a], [b]) => (a < b ? -1 : 1)));
  return {
    id: m.id,
    format: m.format,
    variant: variantOf(spec.quantize),
    ...(spec.task ? { task: spec.task } : {}),
    group: `${entry.repo}@${entry.commit}`,
    source: {
      type: entry.source, repo: entry.repo, revision: entry.revision, commit: entry.commit, bytes: m.sourceBytes,
      files: entry.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })),
    },
    ...(m.quantizedBytes !== undefined ? { quantized: { bytes: m.quantizedBytes, files: m.files ?? [], size_ratio: m.sourceBytes ? m.quantizedBytes / m.sourceBytes : 0 } } : {}),
    quantization: { ...(m.quantization?.params !== undefined ? { params: m.quantization.params } : {}), kept: keptGroups(m.quantization) },
    inputs: m.inputs ?? [],
    verification: {
      status: !r ? 'not verified' : r.passed && !m.gateFailed ? 'passed' : 'failed',
      metrics,
      // A gate's value is a reproducible metric (no gate bounds a timing); NaN (unmeasured) becomes absent.
      gates: (r?.gates ?? []).map((g) => ({ ...g, value: g.value !== undefined && Number.isFinite(g.value) ? g.value : undefined })),
      ...(r?.synthetic_inputs !== undefined ? { synthetic_inputs: r.synthetic_inputs } : {}),
      ...(r?.warnings?.length ? { warnings: r.warnings } : {}),
      ...(histogram ? { kld_histogram: { edges: histogram.edges, counts: histogram.counts } } : {}),
    },
    steps: reproducibleSteps(m.steps),
  };
}

/**
 * A verify artifact holds latency and memory figures, so its digest changes from run to run, and so does
 * the key of every step that reads it (package). Those are listed under timings only; the rest (keys of
 * the steps before verify, artifacts other than verify's) are functions of the inputs.
 */
function reproducibleSteps(steps: ModelInput['steps']): ModelReport['steps'] {
  const i = steps.findIndex((s) => s.step === 'verify');
  return steps.map((s, j) => ({ step: s.step, ...(i < 0 || j < i ? { key: s.key } : {}), ...(s.step === 'verify' ? {} : { artifact: s.artifact }) }));
}

export function buildReport(input: ReportInput): BakeReport {
  const order = new Map(input.recipe.models.map((m, i) => [m.id, i]));
  const models = [...input.models].sort((a, b) => order.get(a.id)! - order.get(b.id)!).map((m) => modelReport(input, m));
  const byTarget = new Map(input.images.map((i) => [i.target, i]));
  const failed = new Set(models.filter((m) => m.verification.status === 'failed').map((m) => m.id));
  const present = new Set(models.map((m) => m.id));
  const targets: TargetReport[] = input.recipe.targets
    .filter((t) => byTarget.has(t.name) || t.models.some((id) => present.has(id)))
    .map((t) => {
      const img = byTarget.get(t.name);
      const blocked = t.models.filter((id) => failed.has(id));
      return {
        name: t.name,
        server: img?.server ?? t.server.kind,
        models: [...t.models],
        built: Boolean(img),
        ...(!img ? { reason: blocked.length ? `gate failed for ${blocked.join(', ')}` : 'not built' } : {}),
        ...(img?.manifestDigest ? { manifest_digest: img.manifestDigest } : {}),
        ...(img?.imageId ? { image_id: img.imageId } : {}),
        tags: img?.tags ?? [],
        ...(img?.size !== undefined ? { size: img.size } : {}),
        layers: img?.layers ?? [],
        ...(img?.annotations ? { gates: Object.fromEntries(Object.entries(img.annotations).filter(([k]) => k.startsWith(GATE_ANNOTATION))) } : {}),
      };
    });
  const gates = models.flatMap((m) => m.verification.gates);
  return {
    schema: REPORT_SCHEMA,
    recipe: { name: input.recipe.name, ...(input.recipe.description ? { description: input.recipe.description } : {}), image: { name: input.recipe.image.name, version: input.recipe.image.version } },
    bake: { version: input.bakeVersion, toolchain: { ...input.toolchain } },
    passed: failed.size === 0,
    summary: {
      models: models.length,
      verified: models.filter((m) => m.verification.status !== 'not verified').length,
      gates: gates.length,
      failed_gates: gates.filter((g) => !g.passed).length,
      failed_models: [...failed],
    },
    models,
    targets,
    timings: {
      steps: input.models.flatMap((m) => m.steps.map((s) => ({ model: m.id, step: s.step, cached: s.cached, key: s.key, artifact: s.artifact, ...(s.ms !== undefined ? { ms: s.ms } : {}) }))),
      metrics: Object.fromEntries(input.models.filter((m) => m.report).map((m) => [m.id, Object.fromEntries(Object.entries(m.report!.metrics).filter(([k, v]) => isTimingMetric(k) && Number.isFinite(v)))])),
      targets: targets.map((t) => ({ name: t.name, ...(input.startup?.[t.name] !== undefined ? { startup_ms: input.startup[t.name] } : {}) })),
    },
  };
}

/** The reproducible part: what is pushed with an image and what its digests are computed over. */
export function withoutTimings(report: BakeReport): BakeReport {
  const { timings: _timings, ...rest } = report;
  return rest;
}

/** The report of one image: its target and the models it carries. */
export function reportForTarget(report: BakeReport, target: string): BakeReport {
  const t = report.targets.find((x) => x.name === target);
  if (!t) throw new Error(`internal: the report has no target ${target}`);
  const ids = new Set(t.models);
  const models = report.models.filter((m) => ids.has(m.id));
  const gates = models.flatMap((m) => m.verification.gates);
  const failed = models.filter((m) => m.verification.status === 'failed').map((m) => m.id);
  return {
    ...report,
    passed: failed.length === 0,
    summary: { models: models.length, verified: models.filter((m) => m.verification.status !== 'not verified').length, gates: gates.length, failed_gates: gates.filter((g) => !g.passed).length, failed_models: failed },
    models,
    targets: [t],
    ...(report.timings ? {
      timings: {
        steps: report.timings.steps.filter((s) => ids.has(s.model)),
        metrics: Object.fromEntries(Object.entries(report.timings.metrics).filter(([k]) => ids.has(k))),
        targets: report.timings.targets.filter((x) => x.name === target),
      },
    } : {}),
  };
}

// ---- the gate summary in image annotations ----------------------------------------------------

export const GATE_ANNOTATION = 'dev.bake.gates';

/** A metric value as reports and annotations print it: 6 significant digits, integers as they are. */
export function formatValue(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return 'unmeasured';
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
}

export function gateText(g: GateResult): string {
  return `${g.metric}=${formatValue(g.value)} ${g.comparison} ${g.threshold}`;
}

/**
 * Image annotations summarizing the gates of the models an image carries: `dev.bake.gates` (passed,
 * failed, or none verified) and `dev.bake.gates.<id>` per model. Only reproducible values, so they
 * never change the manifest digest between rebuilds.
 */
export function gateAnnotations(models: { id: string; report?: VerifyReport }[]): Record<string, string> {
  const out: Record<string, string> = {};
  let gates = 0;
  let failed = 0;
  for (const m of models) {
    if (!m.report) {
      out[`${GATE_ANNOTATION}.${m.id}`] = 'not verified';
      continue;
    }
    gates += m.report.gates.length;
    failed += m.report.gates.filter((g) => !g.passed).length;
    out[`${GATE_ANNOTATION}.${m.id}`] = `${m.report.passed ? 'passed' : 'failed'}: ${m.report.gates.map(gateText).join(', ') || 'no gates'}`;
  }
  const verified = models.filter((m) => m.report).length;
  out[GATE_ANNOTATION] = verified === 0 ? 'none verified' : `${failed ? 'failed' : 'passed'} (${gates - failed}/${gates} gates, ${verified}/${models.length} models verified)`;
  return out;
}
