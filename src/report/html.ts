// The report as one self-contained HTML page: inline CSS, charts as inline SVG (charts.ts), no script
// and nothing fetched when it is opened. Gate failures are flagged where the eye lands first: a red
// banner at the top, red rows in the metric tables, red crosses in the charts.
import { renderCharts, type Chart } from './charts.js';
import { formatBytes } from '../util/units.js';
import { formatValue, gateText, type BakeReport, type ModelReport, type TargetReport } from './model.js';

const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const bytes = (n: number | undefined): string => (n === undefined ? '-' : formatBytes(n, 2));

const short = (d: string | undefined) => (d ? esc(d.replace(/^sha256:/, '').slice(0, 12)) : '-');

const CSS = `
body{font-family:"DejaVu Sans",system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:24px;color:#1c2833;background:#fafafa}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:2px solid #ddd;padding-bottom:4px}h3{margin-bottom:6px}
.sub{color:#566573;margin:0 0 16px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:bold;font-size:.85em;color:#fff}
.badge.passed{background:#2e7d32}.badge.failed{background:#c62828}.badge.not-verified{background:#607d8b}
.banner{padding:12px 16px;border-radius:6px;margin:16px 0;font-weight:bold}
.banner.failed{background:#fdecea;border:2px solid #c62828;color:#8e1b1b}.banner.passed{background:#e8f5e9;border:2px solid #2e7d32;color:#1b5e20}
.banner ul{margin:6px 0 0;font-weight:normal}
table{border-collapse:collapse;margin:8px 0;background:#fff;font-size:.9em}
th,td{border:1px solid #d5d8dc;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eef1f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.gate-failed td{background:#fdecea;color:#8e1b1b;font-weight:bold}tr.gate-passed td.status{color:#2e7d32;font-weight:bold}
code{font-size:.85em}
.charts{display:flex;flex-wrap:wrap;gap:16px}
figure.chart{margin:0;background:#fff;border:1px solid #d5d8dc;border-radius:6px;padding:8px}
figure.chart figcaption{font-size:.85em;color:#566573;max-width:520px;overflow-wrap:anywhere}
.model{background:#fff;border:1px solid #d5d8dc;border-radius:6px;padding:4px 16px 12px;margin:12px 0}
.model.failed{border:2px solid #c62828}
details{margin:6px 0}summary{cursor:pointer}
.warn{color:#8a6d00}
`;

function banner(r: BakeReport): string {
  if (r.passed) return `<div class="banner passed" id="gates-summary">All gates passed: ${r.summary.gates} gate${r.summary.gates === 1 ? '' : 's'} on ${r.summary.verified} verified model${r.summary.verified === 1 ? '' : 's'}.</div>`;
  const items = r.models.flatMap((m) => m.verification.gates.filter((g) => !g.passed).map((g) => `<li><b>${esc(m.id)}</b> (${esc(m.variant)}): ${esc(gateText(g))} — FAILED</li>`));
  return `<div class="banner failed gate-failure" id="gates-summary" role="alert">GATE FAILED: ${r.summary.failed_gates} of ${r.summary.gates} gates failed (${esc(r.summary.failed_models.join(', '))}).<ul>${items.join('')}</ul></div>`;
}

function statusBadge(status: string): string {
  return `<span class="badge ${esc(status.replace(' ', '-'))}">${esc(status.toUpperCase())}</span>`;
}

function metricsTable(m: ModelReport): string {
  const gated = new Map(m.verification.gates.map((g) => [g.metric, g]));
  const names = [...new Set([...m.verification.gates.map((g) => g.metric), ...Object.keys(m.verification.metrics)])];
  const rows = names.map((k) => {
    const g = gated.get(k);
    const v = g?.value ?? m.verification.metrics[k];
    const cls = g ? (g.passed ? 'gate-passed' : 'gate-failed') : '';
    const gateCell = g ? `${esc(g.gate)}: ${esc(g.comparison)} ${esc(g.threshold)}` : '';
    const status = g ? (g.passed ? 'passed' : 'FAILED') : '';
    return `<tr class="${cls}"><td><code>${esc(k)}</code></td><td class="num">${esc(formatValue(v))}</td><td>${gateCell}</td><td class="status">${status}${g?.hint && !g.passed ? `<br><small>${esc(g.hint)}</small>` : ''}</td></tr>`;
  });
  return `<table class="metrics"><tr><th>metric</th><th>value</th><th>gate</th><th>result</th></tr>${rows.join('')}</table>`;
}

function keptTable(m: ModelReport): string {
  if (!m.quantization.kept.length) return '<p>Nothing was kept in higher precision.</p>';
  const rows = m.quantization.kept.map((k) => `<tr><td>${esc(k.kind === 'ops' ? `op ${k.what}` : k.what)}</td><td class="num">${k.count}</td><td>${esc(k.reason)}</td><td><details><summary>${k.count} ${k.kind === 'ops' ? 'node' : 'tensor'}${k.count === 1 ? '' : 's'}</summary><code>${k.items.map(esc).join('<br>')}</code></details></td></tr>`);
  return `<table class="kept"><tr><th>${m.format === 'gguf' ? 'tensor type' : 'op'}</th><th>count</th><th>why</th><th>which</th></tr>${rows.join('')}</table>`;
}

function modelSection(m: ModelReport, r: BakeReport): string {
  const steps = m.steps.map((s) => {
    const t = r.timings?.steps.find((x) => x.model === m.id && x.step === s.step);
    return `<tr><td>${esc(s.step)}</td><td><code>${short(s.key ?? t?.key)}</code></td><td><code>${short(s.artifact ?? t?.artifact)}</code></td>${r.timings ? `<td>${t ? (t.cached ? 'cache hit' : 'ran') : '-'}</td><td class="num">${t?.ms !== undefined ? `${(t.ms / 1000).toFixed(2)} s` : '-'}</td>` : ''}</tr>`;
  });
  const inputs = m.inputs.length ? `<p>Data: ${m.inputs.map((i) => `${esc(i.role)} ${esc(i.kind)} <code>${short(i.sha256)}</code>`).join(', ')}</p>` : '';
  const warnings = (m.verification.warnings ?? []).map((w) => `<p class="warn">warning: ${esc(w)}</p>`).join('');
  const q = m.quantized;
  return `<section class="model ${esc(m.verification.status.replace(' ', '-'))}" id="model-${esc(m.id)}" data-model="${esc(m.id)}" data-status="${esc(m.verification.status)}">
<h3>${esc(m.id)} <small>${esc(m.variant)} · ${esc(m.format)}</small> ${statusBadge(m.verification.status)}</h3>
<p>Source <code>${esc(m.source.repo)}@${esc(m.source.commit.slice(0, 12))}</code> (${esc(m.source.type)}, ${m.source.files.length} files): ${esc(bytes(m.source.bytes))}${q ? ` → ships ${esc(bytes(q.bytes))} (${(100 * q.size_ratio).toFixed(1)} % of the source)` : ''}.</p>
${inputs}${warnings}
${m.verification.status === 'not verified' ? '<p>Not verified (no gates).</p>' : metricsTable(m)}
<details${m.quantization.kept.length ? '' : ' open'}><summary>Kept in higher precision</summary>${keptTable(m)}</details>
<details><summary>Steps</summary><table><tr><th>step</th><th>key</th><th>artifact</th>${r.timings ? '<th>this run</th><th>time</th>' : ''}</tr>${steps.join('')}</table></details>
</section>`;
}

function targetSection(t: TargetReport, chart: Chart | undefined, r: BakeReport): string {
  const startup = r.timings?.targets.find((x) => x.name === t.name)?.startup_ms;
  const layers = t.layers.map((l) => `<tr><td>${esc(l.what)}</td><td><code>${esc(l.digest)}</code></td><td class="num">${esc(bytes(l.size))}</td></tr>`);
  return `<section class="target" id="target-${esc(t.name)}">
<h3>${esc(t.name)} <small>${esc(t.server)}</small> ${t.built ? '' : `<span class="badge failed">NOT BUILT</span>`}</h3>
${t.built ? `<p>Image <code>${esc(t.manifest_digest ?? t.image_id ?? '-')}</code>, ${esc(bytes(t.size))}; tags ${t.tags.map((x) => `<code>${esc(x)}</code>`).join(', ')}${startup !== undefined ? `; started in ${startup} ms` : ''}.</p>` : `<p class="banner failed">${esc(t.reason ?? 'not built')}</p>`}
<p>Models: ${t.models.map(esc).join(', ')}</p>
${chart ? figure(chart) : ''}
${layers.length ? `<table><tr><th>layer</th><th>digest</th><th>size</th></tr>${layers.join('')}</table>` : ''}
</section>`;
}

function figure(c: Chart): string {
  return `<figure class="chart" id="${esc(c.id)}" data-chart="${esc(c.kind)}" data-mark-class="${esc(c.markClass)}" data-marks="${c.marks}"><figcaption><b>${esc(c.title)}</b><br>${esc(c.caption)}</figcaption>${c.svg}</figure>`;
}

/** The whole page. Deterministic for a given report (charts included), so its digest is too. */
export async function renderHtml(report: BakeReport): Promise<string> {
  const charts = await renderCharts(report);
  const of = (kind: Chart['kind']) => charts.filter((c) => c.kind === kind);
  const r = report;
  const title = `bake report: ${r.recipe.name} ${r.recipe.image.version}`;
  const toolchain = Object.entries(r.bake.toolchain).map(([k, v]) => `<tr><td>${esc(k)}</td><td><code>${esc(v)}</code></td></tr>`).join('');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body data-passed="${r.passed}">
<h1>${esc(r.recipe.name)} ${statusBadge(r.passed ? 'passed' : 'failed')}</h1>
<p class="sub">${esc(r.recipe.image.name)}:${esc(r.recipe.image.version)}${r.recipe.description ? ` — ${esc(r.recipe.description)}` : ''} · bake ${esc(r.bake.version)}</p>
${banner(r)}
${of('size-accuracy').length ? `<h2>Size against accuracy</h2><div class="charts">${of('size-accuracy').map(figure).join('')}</div>` : ''}
${of('kld-distribution').length ? `<h2>Per-token KL divergence</h2><div class="charts">${of('kld-distribution').map(figure).join('')}</div>` : ''}
<h2>Models</h2>
${r.models.map((m) => modelSection(m, r)).join('\n')}
<h2>Images</h2>
${r.targets.map((t) => targetSection(t, of('layers').find((c) => c.target === t.name), r)).join('\n')}
<h2>Toolchain</h2><table>${toolchain}</table>
${r.timings ? '<p class="sub">Cache hits and times are of the run that wrote this file; they are left out of what is pushed with an image.</p>' : ''}
</body></html>
`;
}
