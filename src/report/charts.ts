// The report's charts: Vega-Lite specs compiled and rendered to SVG here, at build time, with Vega's
// headless SVG renderer, so the HTML needs no script and no network when it is opened. Each chart says
// which SVG mark class carries its data marks and how many there are (one per variant, or per layer),
// which the HTML records and the browser test checks.
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { BakeReport, ModelReport } from './model.js';

export interface Chart {
  id: string;
  kind: 'size-accuracy' | 'kld-distribution' | 'layers';
  title: string;
  caption: string;
  /** The SVG group class of the data marks (`mark-symbol`, `mark-line`, `mark-rect`). */
  markClass: string;
  /** How many data marks the chart draws. */
  marks: number;
  /** The image a layers chart is of. */
  target?: string;
  svg: string;
}

const STATUS_COLORS = { domain: ['passed', 'failed', 'not gated'], range: ['#2e7d32', '#c62828', '#607d8b'] };
const MIB = 1024 * 1024;

/** The accuracy metric a group's size chart uses: the first gated one, in this order, that every variant reports. */
const ACCURACY: Record<string, { metric: string; title: string }[]> = {
  gguf: [
    { metric: 'kld_mean', title: 'mean KL divergence (nats, lower is better)' },
    { metric: 'ppl_ratio', title: 'perplexity ratio (lower is better)' },
    { metric: 'same_top_pct', title: 'same top token (%)' },
  ],
  onnx: [
    { metric: 'cosine_min', title: 'min cosine similarity' },
    { metric: 'cosine_mean', title: 'mean cosine similarity' },
    { metric: 'decision_agreement', title: 'decision agreement' },
    { metric: 'cer', title: 'character error rate (lower is better)' },
    { metric: 'mean_abs_error', title: 'mean abs error (lower is better)' },
  ],
};

function family(format: string): string {
  return format === 'gguf' ? 'gguf' : format.startsWith('onnx') ? 'onnx' : format;
}

/** Models grouped by source (repo@commit) and format family, in report order. */
export function variantGroups(report: BakeReport): { key: string; group: string; family: string; models: ModelReport[] }[] {
  const groups = new Map<string, { key: string; group: string; family: string; models: ModelReport[] }>();
  for (const m of report.models) {
    const key = `${m.group} ${family(m.format)}`;
    if (!groups.has(key)) groups.set(key, { key, group: m.group, family: family(m.format), models: [] });
    groups.get(key)!.models.push(m);
  }
  return [...groups.values()];
}

function accuracyOf(models: ModelReport[], fam: string): { metric: string; title: string } | undefined {
  const options = ACCURACY[fam] ?? [];
  const measured = options.filter((o) => models.some((m) => m.verification.metrics[o.metric] !== undefined));
  return measured.find((o) => models.some((m) => m.verification.gates.some((g) => g.metric === o.metric))) ?? measured[0];
}

async function render(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** repo@commit with the commit shortened, for titles. */
const shortGroup = (g: string) => g.replace(/@([0-9a-f]{12})[0-9a-f]+$/, '@$1');

const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** Size against accuracy, one point per variant, coloured by gate status, with the gate's threshold as a dashed line. */
async function sizeAccuracy(g: ReturnType<typeof variantGroups>[number], index: number): Promise<Chart | undefined> {
  const acc = accuracyOf(g.models, g.family);
  if (!acc) return undefined;
  const points = g.models.filter((m) => m.verification.metrics[acc.metric] !== undefined).map((m) => {
    const gate = m.verification.gates.find((x) => x.metric === acc.metric);
    return {
      variant: `${m.variant} (${m.id})`,
      label: m.variant,
      size: (m.quantized?.bytes ?? m.source.bytes) / MIB,
      value: m.verification.metrics[acc.metric]!,
      status: gate ? (gate.passed ? 'passed' : 'failed') : 'not gated',
    };
  });
  const thresholds = [...new Set(g.models.flatMap((m) => m.verification.gates.filter((x) => x.metric === acc.metric).map((x) => x.threshold)))];
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 420,
    height: 240,
    background: 'white',
    layer: [
      ...(thresholds.length ? [{
        data: { values: thresholds.map((t) => ({ threshold: t, text: `gate ${t}` })) },
        mark: { type: 'rule' as const, color: '#c62828', strokeDash: [5, 4] },
        encoding: { y: { field: 'threshold', type: 'quantitative' as const } },
      }] : []),
      {
        data: { values: points },
        layer: [
          {
            mark: { type: 'point' as const, filled: true, size: 110, opacity: 1 },
            encoding: {
              x: { field: 'size', type: 'quantitative' as const, title: 'shipped size (MiB)', scale: { zero: false, padding: 24 } },
              y: { field: 'value', type: 'quantitative' as const, title: acc.title, scale: { zero: false, padding: 16 } },
              color: { field: 'status', type: 'nominal' as const, title: 'gate', scale: STATUS_COLORS },
              shape: { field: 'status', type: 'nominal' as const, title: 'gate', scale: { domain: STATUS_COLORS.domain, range: ['circle', 'cross', 'diamond'] } },
              tooltip: [{ field: 'variant', type: 'nominal' as const }, { field: 'value', type: 'quantitative' as const, title: acc.metric }],
              description: { field: 'variant', type: 'nominal' as const },
            },
          },
          {
            mark: { type: 'text' as const, dy: -12, fontSize: 11 },
            encoding: { x: { field: 'size', type: 'quantitative' as const }, y: { field: 'value', type: 'quantitative' as const }, text: { field: 'label', type: 'nominal' as const } },
          },
        ],
      },
    ],
  } as TopLevelSpec;
  return {
    id: `size-accuracy-${index}-${slug(shortGroup(g.group))}`,
    kind: 'size-accuracy',
    title: `${shortGroup(g.group)}: size against ${acc.metric}`,
    caption: `${points.length} variant${points.length === 1 ? '' : 's'} of this source; red crosses failed their gate${thresholds.length ? ', the dashed line is the gate' : ''}.`,
    markClass: 'mark-symbol',
    marks: points.length,
    svg: await render(spec),
  };
}

/** Per-token KLD histograms of a group's GGUF variants as one line each, on a log axis. */
async function kldDistribution(g: ReturnType<typeof variantGroups>[number], index: number): Promise<Chart | undefined> {
  const withHist = g.models.filter((m) => m.verification.kld_histogram);
  if (!withHist.length) return undefined;
  const edges = withHist[0]!.verification.kld_histogram!.edges;
  const n = edges.length;
  // Keep the bins from the first to the last that any variant uses.
  const used = (i: number) => withHist.some((m) => (m.verification.kld_histogram!.counts[i] ?? 0) > 0);
  let lo = 0;
  let hi = n - 1;
  while (lo < hi && !used(lo)) lo++;
  while (hi > lo && !used(hi)) hi--;
    // Bins are a quarter decade wide: the open-ended first and last ones are drawn half a bin past their edge.
  const half = 10 ** 0.125;
  const center = (i: number) => (i === 0 ? edges[1]! / half : i === n - 1 ? edges[i]! * half : Math.sqrt(edges[i]! * edges[i + 1]!));
  const rows = withHist.flatMap((m) => {
    const counts = m.verification.kld_histogram!.counts;
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    return Array.from({ length: hi - lo + 1 }, (_, k) => ({ variant: `${m.variant} (${m.id})`, kld: center(lo + k), share: (100 * (counts[lo + k] ?? 0)) / total }));
  });
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 420,
    height: 240,
    background: 'white',
    data: { values: rows },
    mark: { type: 'line', interpolate: 'monotone', strokeWidth: 2 },
    encoding: {
      x: { field: 'kld', type: 'quantitative', scale: { type: 'log' }, title: 'per-token KL divergence (nats, log scale)', axis: { format: '.0e' } },
      y: { field: 'share', type: 'quantitative', title: 'tokens (%)' },
      color: { field: 'variant', type: 'nominal', title: 'variant' },
    },
  };
  return {
    id: `kld-${index}-${slug(shortGroup(g.group))}`,
    kind: 'kld-distribution',
    title: `${shortGroup(g.group)}: per-token KL divergence`,
    caption: `How the ${withHist.length} GGUF variant${withHist.length === 1 ? '' : 's'} of this source differ from the reference, token by token: further right is worse.`,
    markClass: 'mark-line',
    marks: withHist.length,
    svg: await render(spec),
  };
}

/** One bar per layer of an image. */
async function layers(t: BakeReport['targets'][number]): Promise<Chart | undefined> {
  if (!t.layers.length) return undefined;
  const rows = t.layers.map((l, i) => ({ layer: `${i + 1}. ${l.what}`, kind: l.what.split(' ')[0], size: l.size / MIB, digest: l.digest.slice(7, 19) }));
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 420,
    background: 'white',
    height: { step: 22 },
    data: { values: rows },
    mark: { type: 'bar' },
    encoding: {
      y: { field: 'layer', type: 'nominal', sort: null, title: null },
      x: { field: 'size', type: 'quantitative', title: 'layer size (MiB)' },
      color: { field: 'kind', type: 'nominal', title: 'layer', scale: { domain: ['base', 'runtime', 'model'], range: ['#90a4ae', '#5c6bc0', '#26a69a'] } },
      tooltip: [{ field: 'layer', type: 'nominal' }, { field: 'digest', type: 'nominal' }, { field: 'size', type: 'quantitative', format: '.3f' }],
    },
  };
  return {
    id: `layers-${slug(t.name)}`,
    kind: 'layers',
    title: `image ${t.name}: layer sizes`,
    caption: `${t.layers.length} layer${t.layers.length === 1 ? '' : 's'}, base first.`,
    markClass: 'mark-rect',
    marks: t.layers.length,
    target: t.name,
    svg: await render(spec),
  };
}

export async function renderCharts(report: BakeReport): Promise<Chart[]> {
  const out: Chart[] = [];
  const groups = variantGroups(report);
  for (const [i, g] of groups.entries()) {
    const c = await sizeAccuracy(g, i);
    if (c) out.push(c);
  }
  for (const [i, g] of groups.entries()) {
    const c = await kldDistribution(g, i);
    if (c) out.push(c);
  }
  for (const t of report.targets) {
    const c = await layers(t);
    if (c) out.push(c);
  }
  return out;
}
