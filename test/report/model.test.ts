// The report model: built from the pipeline API's results, grouped into variants, validated by its
// schema; everything that depends on the run (cache hits, times, latency, the verify artifact) stays in
// `timings`, so the pushed report, its HTML, the provenance and the image's gate annotations are
// byte-identical when only timings change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LockEntry } from '../../src/lock/types.js';
import type { Recipe } from '../../src/recipe/types.js';
import { imageArtifacts } from '../../src/report/attach.js';
import { renderCharts } from '../../src/report/charts.js';
import { renderHtml } from '../../src/report/html.js';
import { buildReport, gateAnnotations, reportForTarget, withoutTimings, type ModelInput, type ReportInput } from '../../src/report/model.js';
import { provenanceStatement } from '../../src/report/provenance.js';
import { validateReport } from '../../src/report/schema.js';
import { appendLayers, scratchImage, serializeImage } from '../../src/image/oci/index.js';
import { EMPTY_CONFIG } from '../../src/image/oci/artifact.js';
import type { VerifyReport } from '../../src/verify/gates.js';
import { BakeError } from '../../src/util/errors.js';

const hex = (c: string) => c.repeat(64);
const entry = (repo: string, commit: string): LockEntry => ({ source: 'hub', repo, revision: 'main', commit, fragment: hex('f'), files: [{ path: 'model.safetensors', size: 1000, sha256: hex('a'), lfs: true }] });

const recipe = {
  name: 'r',
  image: { name: 'x/r', version: '1.0.0', tags: [] },
  models: [
    { id: 'q4', quantize: { format: 'gguf', type: 'Q4_K_M' }, verify: { max_kld: 0.05 } },
    { id: 'q8', quantize: { format: 'gguf', type: 'Q8_0' }, verify: { max_kld: 0.05 } },
    { id: 'enc', task: 'feature-extraction', quantize: { format: 'onnx-int8' }, verify: { min_cosine: 0.99 } },
  ],
  targets: [
    { name: 'chat', server: { kind: 'llama-server' }, models: ['q4', 'q8'] },
    { name: 'embed', server: { kind: 'onnx' }, models: ['enc'] },
  ],
} as unknown as Recipe;

function verify(model: string, format: string, metrics: Record<string, number>, gate: { metric: string; threshold: number; comparison: '>=' | '<=' }): VerifyReport {
  const value = metrics[gate.metric]!;
  const passed = gate.comparison === '<=' ? value <= gate.threshold : value >= gate.threshold;
  return { model, format, metrics, gates: [{ gate: `g_${gate.metric}`, ...gate, value, passed }], passed, details: format === 'gguf' ? { kld_histogram: { edges: [0, 0.001, 0.01], counts: [10, 5, 1] } } : {} };
}

/** The API's results for one run; `run` changes only what depends on the run. */
function input(run: { ms: number; cached: boolean; latency: number; verifyArtifact: string; packageKey: string }, kld = 0.01): ReportInput {
  const steps = (quant: string): ModelInput['steps'] => [
    { step: 'fetch', key: hex('1'), artifact: hex('2'), cached: run.cached, ...(run.cached ? {} : { ms: run.ms }) },
    { step: 'quantize', key: hex('3'), artifact: quant, cached: run.cached, ...(run.cached ? {} : { ms: run.ms * 7 }) },
    { step: 'verify', key: hex('5'), artifact: run.verifyArtifact, cached: run.cached },
    { step: 'package', key: run.packageKey, artifact: hex('7'), cached: run.cached },
  ];
  return {
    recipe,
    entries: new Map([['q4', entry('org/chat', hex('c'))], ['q8', entry('org/chat', hex('c'))], ['enc', entry('org/enc', hex('d'))]]),
    bakeVersion: '0.1.0',
    toolchain: { 'llama.cpp': 'node-llama-cpp@1', onnxruntime: 'onnxruntime-node@1' },
    models: [
      { id: 'q4', format: 'gguf', steps: steps(hex('4')), sourceBytes: 1000, quantizedBytes: 300, files: ['m.gguf'], report: verify('q4', 'gguf', { kld_mean: kld, scored_tokens: 16 }, { metric: 'kld_mean', threshold: 0.05, comparison: '<=' }), quantization: { params: { type: 'Q4_K_M' }, kept: [{ type: 'F32', reason: 'one-dimensional', tensors: ['a_norm', 'b_norm'] }] } },
      { id: 'q8', format: 'gguf', steps: steps(hex('8')), sourceBytes: 1000, quantizedBytes: 550, files: ['m.gguf'], report: verify('q8', 'gguf', { kld_mean: 0.001, scored_tokens: 16 }, { metric: 'kld_mean', threshold: 0.05, comparison: '<=' }), inputs: [{ role: 'eval', kind: 'text', sha256: hex('e') }] },
      { id: 'enc', format: 'onnx-int8', steps: steps(hex('9')), sourceBytes: 800, quantizedBytes: 220, report: verify('enc', 'onnx', { cosine_min: 0.995, latency_ratio: run.latency, peak_rss_bytes: 1000 + run.latency }, { metric: 'cosine_min', threshold: 0.99, comparison: '>=' }), quantization: { params: {}, keptFloat: [{ node: 'n1', op: 'Gemm', reason: 'dynamic mode' }, { node: 'n2', op: 'Gemm', reason: 'dynamic mode' }] } },
    ],
    images: [
      { target: 'chat', server: 'llama-server', tags: ['1.0.0-chat'], manifestDigest: `sha256:${hex('b')}`, size: 900, layers: [{ what: 'model q4', digest: `sha256:${hex('1')}`, size: 300 }, { what: 'model q8', digest: `sha256:${hex('2')}`, size: 550 }] },
    ],
  };
}

const RUN_A = { ms: 10, cached: false, latency: 0.8, verifyArtifact: hex('6'), packageKey: hex('0') };
const RUN_B = { ms: 99, cached: true, latency: 1.3, verifyArtifact: hex('5'), packageKey: hex('9') };

test('the report groups variants of one source, lists what stayed in higher precision, and validates', async () => {
  const r = buildReport(input(RUN_A));
  await validateReport(r);
  assert.deepEqual(r.models.map((m) => [m.id, m.variant, m.group]), [['q4', 'Q4_K_M', `org/chat@${hex('c')}`], ['q8', 'Q8_0', `org/chat@${hex('c')}`], ['enc', 'INT8', `org/enc@${hex('d')}`]]);
  assert.deepEqual(r.models[0]!.quantization.kept, [{ kind: 'tensors', what: 'F32', reason: 'one-dimensional', count: 2, items: ['a_norm', 'b_norm'] }]);
  assert.deepEqual(r.models[2]!.quantization.kept, [{ kind: 'ops', what: 'Gemm', reason: 'dynamic mode', count: 2, items: ['n1', 'n2'] }]);
  assert.equal(r.models[0]!.quantized!.size_ratio, 0.3);
  // Latency and memory are timings, not metrics of the model.
  assert.deepEqual(Object.keys(r.models[2]!.verification.metrics), ['cosine_min']);
  assert.deepEqual(Object.keys(r.timings!.metrics.enc!).sort(), ['latency_ratio', 'peak_rss_bytes']);
  // The image that carries enc was not built (not in the results): said, not hidden.
  assert.deepEqual(r.targets.map((t) => [t.name, t.built]), [['chat', true], ['embed', false]]);
  // A per-image report keeps only that image's models.
  assert.deepEqual(reportForTarget(r, 'chat').models.map((m) => m.id), ['q4', 'q8']);
});

test('when only timings change, the pushed report, its HTML, the provenance and the image annotations are byte-identical', async () => {
  const a = buildReport(input(RUN_A));
  const b = buildReport(input(RUN_B));
  assert.notDeepEqual(a.timings, b.timings);
  assert.deepEqual(withoutTimings(a), withoutTimings(b));
  assert.equal(await renderHtml(withoutTimings(a)), await renderHtml(withoutTimings(b)));
  const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${hex('b')}`, size: 500 };
  const [x, y] = await Promise.all([a, b].map((report) => imageArtifacts({ report, target: 'chat', repository: '127.0.0.1:1/ml/r', subject, epoch: 1700000000 })));
  assert.equal(x!.report.descriptor.digest, y!.report.descriptor.digest);
  assert.equal(x!.provenance.descriptor.digest, y!.provenance.descriptor.digest);
  assert.deepEqual(provenanceStatement(a, { name: 'h/r', digest: subject.digest }), provenanceStatement(b, { name: 'h/r', digest: subject.digest }));
  // The image: its annotations summarize the gates from reproducible values only, so its digest holds.
  const image = (run: typeof RUN_A) => {
    const i = input(run);
    return serializeImage(appendLayers(scratchImage(), [], { annotations: gateAnnotations(i.models.map((m) => ({ id: m.id, report: m.report }))) })).manifest.descriptor.digest;
  };
  assert.equal(image(RUN_A), image(RUN_B));
  // ...while a metric that is not a timing does change it.
  const moved = input(RUN_A, 0.02);
  assert.notEqual(serializeImage(appendLayers(scratchImage(), [], { annotations: gateAnnotations(moved.models.map((m) => ({ id: m.id, report: m.report }))) })).manifest.descriptor.digest, image(RUN_A));
});

test('a failed gate: the report says so, the annotations say so, the HTML flags it', async () => {
  const i = input(RUN_A, 0.09);
  i.models[0]!.gateFailed = true;
  const r = buildReport(i);
  assert.equal(r.passed, false);
  assert.deepEqual(r.summary.failed_models, ['q4']);
  assert.equal(r.models[0]!.verification.status, 'failed');
  const ann = gateAnnotations(i.models.map((m) => ({ id: m.id, report: m.report })));
  assert.equal(ann['dev.bake.gates'], 'failed (2/3 gates, 3/3 models verified)');
  assert.equal(ann['dev.bake.gates.q4'], 'failed: kld_mean=0.09 <= 0.05');
  const html = await renderHtml(r);
  assert.match(html, /class="banner failed gate-failure"[^>]*>GATE FAILED: 1 of 3 gates failed \(q4\)/);
  assert.match(html, /<tr class="gate-failed"><td><code>kld_mean<\/code><\/td><td class="num">0\.09<\/td>/);
});

test('charts: one point per variant, one KLD line per GGUF variant, one bar per layer; rendering is deterministic', async () => {
  const r = buildReport(input(RUN_A));
  const charts = await renderCharts(r);
  assert.deepEqual(charts.map((c) => [c.kind, c.marks]), [['size-accuracy', 2], ['size-accuracy', 1], ['kld-distribution', 2], ['layers', 2]]);
  for (const c of charts) {
    const group = new RegExp(`<g class="${c.markClass} role-mark[^"]*"[^>]*>(.*?)</g>`, 'g');
    const drawn = [...c.svg.matchAll(group)].reduce((n, m) => n + (m[1]!.match(/<path/g)?.length ?? 0), 0);
    assert.equal(drawn, c.marks, `${c.id}: ${c.markClass} marks`);
  }
  assert.deepEqual((await renderCharts(r)).map((c) => c.svg), charts.map((c) => c.svg));
});

test('a report that does not match the schema is refused as a bug', async () => {
  const r = buildReport(input(RUN_A)) as unknown as Record<string, unknown>;
  delete r.summary;
  await assert.rejects(validateReport(r), (e: unknown) => e instanceof BakeError && e.exit === 'failure' && /summary/.test(e.message));
});

test('artifact manifests: the empty config, the subject, file titles', async () => {
  const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${hex('b')}`, size: 500 };
  const { report, provenance } = await imageArtifacts({ report: buildReport(input(RUN_A)), target: 'chat', repository: '127.0.0.1:1/ml/r:tag', subject, epoch: 0 });
  const m = JSON.parse(Buffer.from(report.bytes).toString());
  assert.equal(EMPTY_CONFIG.descriptor.digest, 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
  assert.deepEqual(m.config, EMPTY_CONFIG.descriptor);
  assert.deepEqual(m.subject, subject);
  assert.deepEqual(m.layers.map((l: { annotations: Record<string, string> }) => l.annotations['org.opencontainers.image.title']), ['report.json', 'report.html']);
  assert.equal(m.annotations['dev.bake.gates'], undefined, 'chat has no image annotations in this input');
  const statement = JSON.parse(Buffer.from(provenance.blobs[1]!.bytes).toString());
  assert.deepEqual(statement.subject, [{ name: '127.0.0.1:1/ml/r', digest: { sha256: hex('b') } }]);
  assert.deepEqual(statement.predicate.buildDefinition.resolvedDependencies.slice(0, 2), [
    { name: 'q4', uri: `pkg:huggingface/org/chat@${hex('c')}`, digest: { gitCommit: hex('c') }, annotations: { source: 'hub', repo: 'org/chat', revision: 'main' } },
    { name: 'q4/model.safetensors', uri: `pkg:huggingface/org/chat@${hex('c')}#model.safetensors`, digest: { sha256: hex('a') }, annotations: { size: 1000 } },
  ]);
});
