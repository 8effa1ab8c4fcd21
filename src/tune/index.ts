// `bake bench`: measures a llama-server target under the fixed workload for each point of a settings
// sweep (its image started once per point with those settings as its CMD, or a server at a URL), marks
// the best by the objective, and can write the winner into the recipe. Nothing here prints: progress
// goes to onEvent, the CLI renders the table.
import type Docker from 'dockerode';
import { targetImage } from '../image/compose/index.js';
import { targetOf } from '../recipe/targets.js';
import type { Recipe, ServerSettingValue, TargetSpec } from '../recipe/types.js';
import { serverArgs } from '../runtime/contract.js';
import { InputError } from '../util/errors.js';
import { measure, METRIC_SOURCES, type Measurement } from './measure.js';
import { startImageServer, urlServer, type RunningServer } from './servers.js';
import { sweepPoints, type SettingPoint } from './sweep.js';
import { workload, type Workload } from './workload.js';

export { applySettings, applySettingsText } from './apply.js';
export { parseSweep, sweepPoints, type SettingPoint } from './sweep.js';
export { measure, METRIC_SOURCES, percentile, type Measurement } from './measure.js';
export { freePort, processCpuSeconds, processRss, startImageServer, startLocalServer, urlServer, type RunningServer } from './servers.js';
export { CHAT_PROMPTS, EMBEDDING_INPUTS, workload, type Workload } from './workload.js';

/** Metrics an objective may rank by, and which way is better. */
export const OBJECTIVES: Record<string, 'min' | 'max'> = {
  ttft_p50_ms: 'min', ttft_p95_ms: 'min', gen_tps: 'max', prompt_tps: 'max', embeddings_per_s: 'max', rss_bytes: 'min',
};

export interface BenchPoint {
  /** The swept settings of this point (empty without a sweep). */
  settings: SettingPoint;
  /** The server arguments it ran with (the image's CMD for this point). */
  args: string[];
  metrics: Measurement & { rss_bytes?: number };
  best: boolean;
}

export interface BenchResult {
  recipe: string;
  target: string;
  /** The image run for each point, or the URL measured. */
  server: string;
  workload: Workload;
  objective: { metric: string; better: 'min' | 'max' };
  /** Where each metric comes from: llama-server's timings or the client's clock. */
  sources: Record<string, string>;
  points: BenchPoint[];
}

export type BenchEvent = { type: 'point'; index: number; total: number; settings: SettingPoint } | { type: 'measured'; index: number; metrics: BenchPoint['metrics'] };

export interface BenchOptions {
  recipe: Recipe;
  target?: string;
  sweep?: Record<string, ServerSettingValue[]>;
  /** Measure a running server instead of starting the image. */
  url?: string;
  /** The image to run (default: the target's `<image.name>:<version>-<target>`). */
  image?: string;
  objective?: string;
  requests?: number;
  concurrency?: number;
  maxTokens?: number;
  docker?: Docker;
  onEvent?: (e: BenchEvent) => void;
}

/** The one llama-server target to measure: named, or the recipe's only one. */
export function benchTargetOf(recipe: Recipe, name: string | undefined): TargetSpec {
  if (name) {
    const t = targetOf(recipe, name);
    if (t.server.kind !== 'llama-server') throw new InputError(`target ${name} runs ${t.server.kind}; bake bench measures llama-server targets`, { file: recipe.file, field: '--target' });
    return t;
  }
  const servers = recipe.targets.filter((t) => t.server.kind === 'llama-server');
  if (servers.length !== 1) {
    throw new InputError(`recipe ${recipe.name} has ${servers.length} llama-server targets: say which with --target`, { file: recipe.file, field: '--target', expected: servers.map((t) => t.name).join(', ') || 'a llama-server target' });
  }
  return servers[0]!;
}

function isEmbedding(t: TargetSpec): boolean {
  return t.server.settings.embedding === true || t.server.settings.embeddings === true;
}

export async function bench(opts: BenchOptions): Promise<BenchResult> {
  const target = benchTargetOf(opts.recipe, opts.target);
  const kind = isEmbedding(target) ? 'embedding' : 'chat';
  const metric = opts.objective ?? (kind === 'embedding' ? 'embeddings_per_s' : 'ttft_p50_ms');
  const better = OBJECTIVES[metric];
  if (!better || (kind === 'embedding' ? /^(ttft|gen|prompt)/.test(metric) : metric === 'embeddings_per_s')) {
    throw new InputError(`--objective ${metric} is not measured for a${kind === 'embedding' ? 'n embedding' : ' chat'} server`, {
      field: '--objective', expected: Object.keys(OBJECTIVES).filter((k) => (kind === 'embedding' ? !/^(ttft|gen|prompt)/.test(k) : k !== 'embeddings_per_s')).join(', '),
    });
  }
  const sweep = opts.sweep ?? {};
  const points = sweepPoints(target.server, sweep);
  if (opts.url && points.length > 1) {
    throw new InputError('--sweep needs bake to start the server for each setting; a server at --url runs with the flags it was started with', { field: '--sweep', hint: 'drop --url to run the target\'s image per setting' });
  }
  const w = workload(kind, { requests: opts.requests, concurrency: opts.concurrency, maxTokens: opts.maxTokens });
  const image = opts.image ?? targetImage(opts.recipe, target);
  let docker = opts.docker;
  if (!opts.url && !docker) docker = (await import('../image/docker/index.js')).connectEngine();
  const out: BenchPoint[] = [];
  for (const [index, settings] of points.entries()) {
    opts.onEvent?.({ type: 'point', index, total: points.length, settings });
    const args = serverArgs(target.server, settings);
    const server: RunningServer = opts.url ? urlServer(opts.url) : await startImageServer({ docker: docker!, image, args });
    try {
      const m = await measure(server.url, w);
      const rss = await server.rss();
      const metrics = { ...m, ...(rss !== undefined ? { rss_bytes: rss } : {}) };
      opts.onEvent?.({ type: 'measured', index, metrics });
      out.push({ settings, args: opts.url ? [] : args, metrics, best: false });
    } finally {
      await server.stop();
    }
  }
  const score = (p: BenchPoint): number | undefined => (p.metrics as unknown as Record<string, number | undefined>)[metric];
  let best: BenchPoint | undefined;
  for (const p of out) {
    const s = score(p);
    if (s === undefined || Number.isNaN(s) || p.metrics.errors > 0) continue;
    if (!best || (better === 'min' ? s < score(best)! : s > score(best)!)) best = p;
  }
  if (best) best.best = true;
  const used = kind === 'embedding' ? ['embeddings_per_s', 'rss_bytes'] : ['ttft_p50_ms', 'ttft_p95_ms', 'gen_tps', 'prompt_tps', 'rss_bytes'];
  return {
    recipe: opts.recipe.name,
    target: target.name,
    server: opts.url ?? image,
    workload: w,
    objective: { metric, better },
    sources: Object.fromEntries(used.map((k) => [k, METRIC_SOURCES[k]!])),
    points: out,
  };
}
