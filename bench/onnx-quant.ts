// Benchmark: ONNX quantization and verification on real models and the test BERT encoder.
// Reference tool, same invocation: a plain copy of the same model file(s) (fs.copyFile), as the issue asks.
// Run: node --import tsx bench/onnx-quant.ts   (prints a markdown table; BENCH_RUNS sets latency runs)
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { OnnxQuantSpec } from '../src/recipe/types.js';
import { quantizeOnnxModel } from '../src/quant/onnx/index.js';
import { verifyOnnxModel } from '../src/verify/onnx/index.js';
import type { GenerateOptions } from '../src/model/onnx/index.js';
import { writeBertFolder } from '../test/support/onnx-bert.js';
import { REAL_MODELS, SILERO_INPUTS } from '../test/support/onnx-models.js';

interface Case { name: string; src: () => Promise<string>; spec: OnnxQuantSpec; task?: string; inputs?: GenerateOptions }

const work = await mkdtemp(join(tmpdir(), 'bake-bench-onnx-'));
const folderOf = (file: string) => async () => {
  const dir = join(work, `src-${basename(file, '.onnx')}`);
  await mkdir(dir, { recursive: true });
  await copyFile(file, join(dir, 'model.onnx'));
  return dir;
};
const image = { defaultDim: 256 };
const cases: Case[] = [
  { name: 'silero_vad (If subgraphs)', src: folderOf(REAL_MODELS.sileroVad), spec: { format: 'onnx-int8' }, inputs: SILERO_INPUTS },
  { name: 'silero_vad_16k_op15', src: folderOf(REAL_MODELS.sileroOp15), spec: { format: 'onnx-int8' }, inputs: SILERO_INPUTS },
  { name: 'silero_vad_op18_ifless', src: folderOf(REAL_MODELS.sileroOp18), spec: { format: 'onnx-int8' }, inputs: SILERO_INPUTS },
  { name: 'silero_vad_op18_ifless fp16', src: folderOf(REAL_MODELS.sileroOp18), spec: { format: 'onnx-fp16' }, inputs: SILERO_INPUTS },
  { name: 'ppocr-det q8 (dynamic)', src: folderOf(REAL_MODELS.ppocrDet), spec: { format: 'onnx-int8' }, inputs: image },
  { name: 'ppocr-det static QDQ per-channel', src: folderOf(REAL_MODELS.ppocrDet), spec: { format: 'onnx-int8', mode: 'static', per_channel: true, dtype: 'int8', calibration: { samples: 8 } }, inputs: image },
  { name: 'ppocr-det fp16', src: folderOf(REAL_MODELS.ppocrDet), spec: { format: 'onnx-fp16' }, inputs: image },
  { name: 'openwakeword hello_deepa (Gemm)', src: folderOf(REAL_MODELS.wakeword), spec: { format: 'onnx-int8' } },
  { name: 'BERT-style encoder (test build) q8', src: () => writeBertFolder(join(work, 'bert'), { hidden: 256, layers: 4, heads: 4, intermediate: 1024 }), spec: { format: 'onnx-int8' }, task: 'feature-extraction' },
  { name: 'BERT-style classifier (test build) q8', src: () => writeBertFolder(join(work, 'bert-cls'), { hidden: 256, layers: 4, heads: 4, intermediate: 1024, labels: ['neg', 'neu', 'pos'] }), spec: { format: 'onnx-int8' }, task: 'text-classification' },
];

const runs = Number(process.env.BENCH_RUNS ?? 20);
const fmt = (x: number | undefined, d = 3) => (x === undefined ? '-' : x.toFixed(d));
const rows: string[] = [];
rows.push('| model | quantize ms | copy ms | quantize/copy | verify ms | size ratio | cosine mean | cosine min | top1 | spearman | latency ratio (p50) | peak RSS MB (quant / ref) | kept float |');
rows.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const c of cases) {
  const src = await c.src();
  const out = join(work, `out-${rows.length}`);
  const copyOut = join(work, `copy-${rows.length}`);
  await mkdir(copyOut, { recursive: true });
  // Reference: copy the same ONNX file (best of 3, page cache warm for both).
  let copyMs = Infinity;
  const file = c.name.startsWith('BERT') ? join(src, 'onnx/model.onnx') : join(src, 'model.onnx');
  for (let i = 0; i < 3; i++) { const t = performance.now(); await copyFile(file, join(copyOut, 'model.onnx')); copyMs = Math.min(copyMs, performance.now() - t); }
  const t0 = performance.now();
  const q = await quantizeOnnxModel(src, out, c.spec, { task: c.task, inputs: c.inputs });
  const quantMs = performance.now() - t0;
  const t1 = performance.now();
  const r = await verifyOnnxModel(c.name, src, out, { runs }, { task: c.task, inputs: c.inputs, samples: 8 });
  const verifyMs = performance.now() - t1;
  const m = r.metrics;
  rows.push(`| ${c.name} | ${fmt(quantMs, 0)} | ${fmt(copyMs, 2)} | ${fmt(quantMs / copyMs, 0)} | ${fmt(verifyMs, 0)} | ${fmt(m.size_ratio)} | ${fmt(m.cosine_mean, 4)} | ${fmt(m.cosine_min, 4)} | ${fmt(m.top1_agreement, 2)} | ${fmt(m.spearman, 3)} | ${fmt(m.latency_ratio, 2)} | ${fmt((m.peak_rss_bytes ?? 0) / 2 ** 20, 0)} / ${fmt((m.peak_rss_bytes_reference ?? 0) / 2 ** 20, 0)} | ${q.keptFloat.length} |`);
  process.stderr.write(`${c.name}: done\n`);
}
await rm(work, { recursive: true, force: true });
console.log(rows.join('\n'));
