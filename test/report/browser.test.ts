// The build report as a person sees it: `bake report` on a multi-variant recipe (stories260K at three GGUF
// types, one with a gate it fails; a BERT encoder at INT8 and FP16), the HTML opened in Debian's headless
// Chromium (playwright-core, never a downloaded browser). No console errors, one mark per variant in each
// chart, the failed gate flagged in red; the JSON validates against schema/report.schema.json. The
// screenshot is kept at test-artifacts/report/multi-variant.png.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { reportValidator } from '../../src/report/schema.js';
import type { BakeReport } from '../../src/report/model.js';
import { projectRoot } from '../support/cli.js';
import { reportProject, VARIANTS, type ReportProject } from '../support/report-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps trying hosts this machine cannot reach.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const SCREENSHOT = join(projectRoot, 'test-artifacts', 'report', 'multi-variant.png');

let project: ReportProject;
let run: { code: number; stdout: string; stderr: string };
let browser: BrowserContext;

before(async () => {
  project = await reportProject({ failing: true });
  run = await project.run(['report', 'multi', '--out', 'out']);
  browser = await chromium.launchPersistentContext(await mkdtemp(join(tmpdir(), 'bake-chromium-')), { executablePath: CHROMIUM, headless: true, args: FLAGS });
});
after(async () => {
  await browser?.close();
  await project?.remove();
});

test('bake report writes the HTML and JSON, says which gate failed, and exits 5', () => {
  assert.equal(run.code, 5, run.stderr);
  assert.match(run.stdout, /multi\.report\.html/);
  assert.match(run.stdout, /stories-q4 \(Q4_0\): failed - kld_mean [0-9.e-]+ fails <= 0\.00001/);
});

test('the report JSON validates against its schema and records the failure', async () => {
  const report = JSON.parse(await readFile(join(project.dir, 'out', 'multi.report.json'), 'utf8')) as BakeReport;
  const validate = await reportValidator();
  assert.ok(validate(report), JSON.stringify(validate.errors));
  assert.equal(report.passed, false);
  assert.deepEqual(report.summary.failed_models, ['stories-q4']);
  assert.deepEqual(report.models.map((m) => m.variant), ['Q4_0', 'Q5_1', 'Q8_0', 'INT8', 'FP16']);
  // The image that would carry the failed model is not built; the other one is.
  assert.deepEqual(report.targets.map((t) => [t.name, t.built]), [['chat', false], ['embed', true]]);
  assert.match(report.targets[0]!.reason!, /stories-q4/);
  // Variants of one source share a group; the per-token KLD histogram came from the llama verifier.
  assert.equal(new Set(report.models.filter((m) => m.format === 'gguf').map((m) => m.group)).size, 1);
  for (const m of report.models.filter((x) => x.format === 'gguf')) {
    const h = m.verification.kld_histogram!;
    assert.equal(h.counts.reduce((a, b) => a + b, 0), m.verification.metrics.scored_tokens);
  }
  // Timings are apart from the rest.
  assert.ok(report.timings!.steps.length > 0);
  assert.ok(!JSON.stringify(report.models).includes('latency'));
});

test('in Chromium: no console errors, one mark per variant in each chart, the failed gate flagged; screenshot kept', { timeout: 120_000 }, async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.setViewportSize({ width: 1150, height: 900 });
  await page.goto(`file://${join(project.dir, 'out', 'multi.report.html')}`);
  await page.waitForLoadState('load');
  assert.deepEqual(errors, []);
  // Self-contained: the page itself is the only thing loaded.
  assert.deepEqual(requests.filter((u) => !u.startsWith('file://')), []);

  const charts = await page.$$eval('figure.chart', (figs) => figs.map((f) => ({
    kind: f.getAttribute('data-chart'),
    title: f.querySelector('figcaption b')?.textContent ?? '',
    declared: Number(f.getAttribute('data-marks')),
    drawn: f.querySelectorAll(`svg g.${f.getAttribute('data-mark-class')}.role-mark > path`).length,
    labels: [...f.querySelectorAll('svg [aria-label]')].map((e) => e.getAttribute('aria-label') ?? ''),
  })));
  const of = (kind: string, source: string) => charts.filter((c) => c.kind === kind && c.title.includes(source));
  // Size against accuracy: one point per variant of each source, for both sources.
  for (const [source, ids] of [['models/stories', VARIANTS.stories], ['models/encoder', VARIANTS.encoder]] as const) {
    const [c] = of('size-accuracy', source);
    assert.ok(c, `a size chart for ${source}: ${JSON.stringify(charts.map((x) => x.title))}`);
    assert.equal(c.drawn, ids.length, `${source}: points drawn`);
    assert.equal(c.declared, ids.length);
    for (const id of ids) assert.ok(c.labels.some((l) => l.includes(id)), `${id} has a point`);
  }
  // Per-token KLD: one line per GGUF variant.
  const [kld] = of('kld-distribution', 'models/stories');
  assert.equal(kld?.drawn, VARIANTS.stories.length);
  // Layers: one bar per layer of the image that was built (two model layers on scratch).
  const layers = charts.filter((c) => c.kind === 'layers');
  assert.deepEqual(layers.map((c) => c.drawn), [2]);

  // The failure is flagged where it is seen first: a red banner naming it, a red row, a FAILED badge.
  const banner = page.locator('#gates-summary');
  assert.ok(await banner.isVisible());
  assert.match(await banner.innerText(), /GATE FAILED[\s\S]*stories-q4[\s\S]*kld_mean/);
  assert.equal(await banner.evaluate((e) => getComputedStyle(e).borderTopColor), 'rgb(198, 40, 40)');
  const row = page.locator('#model-stories-q4 tr.gate-failed');
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), /kld_mean[\s\S]*FAILED/);
  assert.ok(await row.isVisible());
  assert.equal(await page.locator('#model-stories-q5 tr.gate-failed').count(), 0);
  // The failed variant's point is drawn as a red cross.
  const failedPoint = await page.$$eval('figure.chart[data-chart="size-accuracy"] g.mark-symbol.role-mark > path', (ps) => ps.filter((p) => (p.getAttribute('aria-label') ?? '').includes('stories-q4')).map((p) => p.getAttribute('fill')));
  assert.deepEqual(failedPoint, ['#c62828']);

  await mkdir(join(projectRoot, 'test-artifacts', 'report'), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  const png = await readFile(SCREENSHOT);
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  await page.close();
});
