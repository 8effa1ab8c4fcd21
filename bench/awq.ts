// Benchmark: AWQ on CPU (bake's forward pass in onnxruntime + the search in TypeScript) on generated LLaMA
// checkpoints: wall and CPU time, time per calibration token and peak RSS, as the model and the sample
// count grow; and the forward pass's achieved GFLOP/s against onnxruntime's own MatMul GFLOP/s at the
// model's shapes on this machine (the rate a forward pass made of MatMuls can approach), same threads.
// Each AWQ run is a child process, so its peak RSS is its own.
//   node --import tsx bench/awq.ts                 small sizes (a quick check that it works)
//   node --import tsx bench/awq.ts --full          ~100M parameters (embd 768, ff 2048, 12 layers, vocab 32000),
//                                                  6 layers for the parameter trend, 8 and 16 samples of 512
//   [--threads 1] [--length 512]
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { encodeModel, makeNode, DataType, type ModelProto } from '../src/formats/onnx/index.js';
import { openLlamaCheckpoint } from '../src/model/llama/config.js';
import { forwardHidden, LlamaRunner } from '../src/model/llama/runner.js';
import { checkpointWeights } from '../src/model/llama/weights.js';
import { quantizeAwq } from '../src/quant/awq/index.js';
import { writeRandomLlama, type RandomLlamaShape } from '../test/support/gguf-fixtures.js';
import { flagOption, numberOption } from './args.js';

interface Job { shape: RandomLlamaShape; samples: number; length: number; threads: number; dir: string }
interface ChildResult { params: number; tokens: number; seconds: number; cpuSeconds: number; peakRss: number; forwardGflops: number; forwardSeconds: number }

async function child(job: Job): Promise<ChildResult> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 25);
  const src = join(job.dir, 'src');
  await writeRandomLlama(src, job.shape, 3);
  const ck = await openLlamaCheckpoint(src);
  const c = ck.config;
  const params = [...ck.checkpoint.tensors.values()].reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
  // The forward pass alone on the calibration batch (embedding lookups excluded from the FLOP count).
  const runner = new LlamaRunner(c, { threads: job.threads });
  const tokens = Array.from({ length: job.samples }, (_, s) => Array.from({ length: job.length }, (_, i) => (s * 7919 + i * 31) % 512));
  await forwardHidden(runner, checkpointWeights(ck), tokens.slice(0, 1).map((t) => t.slice(0, 16))); // warm-up: sessions
  runner.macs = 0;
  const f0 = performance.now();
  await forwardHidden(runner, checkpointWeights(ck), tokens);
  const forwardSeconds = (performance.now() - f0) / 1000;
  const forwardGflops = (2 * runner.macs) / forwardSeconds / 1e9;
  await runner.close();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await quantizeAwq(src, join(job.dir, 'out'), { format: 'awq', threads: job.threads, calibration: { samples: job.samples, length: job.length } });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage.rss());
  return { params, tokens: r.calibrationTokens, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRss: peak, forwardGflops, forwardSeconds };
}

/** onnxruntime's MatMul alone: [m, k] x [k, n] with B an initializer (prepacked), median of runs. */
async function ortMatMulGflops(m: number, k: number, n: number, threads: number): Promise<number> {
  const b = new Float32Array(k * n).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  const model: ModelProto = {
    ir_version: 8, opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: 'mm', node: [makeNode('MatMul', ['a', 'b'], ['y'], 'mm')],
      initializer: [{ name: 'b', dims: [k, n], data_type: DataType.FLOAT, raw_data: Buffer.from(b.buffer) }],
      input: [{ name: 'a', type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: [{ dim_value: m }, { dim_value: k }] } } } }],
      output: [{ name: 'y', type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: [{ dim_value: m }, { dim_value: n }] } } } }],
      value_info: [],
    },
  };
  const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const a = new ort.Tensor('float32', new Float32Array(m * k).fill(0.5), [m, k]);
  await s.run({ a });
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await s.run({ a });
    times.push((performance.now() - t0) / 1000);
  }
  await s.release();
  times.sort((x, y) => x - y);
  return (2 * m * k * n) / times[2]! / 1e9;
}

function runChild(job: Job): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!) as ChildResult) : reject(new Error(`child exited ${code}`))));
  });
}

const childArg = process.argv.indexOf('--child');
if (childArg >= 0) {
  process.stdout.write(`${JSON.stringify(await child(JSON.parse(process.argv[childArg + 1]!) as Job))}\n`);
} else {
  const full = flagOption('full');
  const threads = numberOption('threads', 1);
  const length = numberOption('length', full ? 512 : 64);
  const big: RandomLlamaShape = full ? { embd: 768, ff: 2048, layers: 12, heads: 12, kvHeads: 4, vocab: 32000, tied: true } : { embd: 256, ff: 512, layers: 4, heads: 4, kvHeads: 2, vocab: 512, tied: true };
  const half: RandomLlamaShape = { ...big, layers: big.layers / 2 };
  const s1 = full ? 8 : 4;
  const jobs: [string, RandomLlamaShape, number][] = [['model', half, s1], ['model', big, s1], ['samples', big, 2 * s1]];
  const dir = await mkdtemp(join(tmpdir(), 'bake-awq-bench-'));
  try {
    console.log(`AWQ on CPU, generated LLaMA, ${threads} onnxruntime thread(s), calibration length ${length}; one child process per row`);
    console.log('layers | params (M) | samples x length | AWQ s | CPU s | ms / calib token | peak RSS MB | forward GFLOP/s | ORT MatMul GFLOP/s | ratio');
    const rows: ChildResult[] = [];
    for (const [, shape, samples] of jobs) {
      const jobDir = join(dir, `${shape.layers}-${samples}`);
      const r = await runChild({ shape, samples, length, threads, dir: jobDir });
      rows.push(r);
      const mm = await ortMatMulGflops(samples * length, shape.embd, shape.ff, threads);
      console.log(`${shape.layers} | ${(r.params / 1e6).toFixed(1)} | ${samples} x ${length} | ${r.seconds.toFixed(1)} | ${r.cpuSeconds.toFixed(1)} | ${((1000 * r.seconds) / r.tokens).toFixed(2)} | ${(r.peakRss / 2 ** 20).toFixed(0)} | ${r.forwardGflops.toFixed(1)} | ${mm.toFixed(1)} | ${(r.forwardGflops / mm).toFixed(2)}`);
      await rm(jobDir, { recursive: true, force: true });
    }
    const [a, b, c] = rows as [ChildResult, ChildResult, ChildResult];
    console.log(`growth: ${(b.params / a.params).toFixed(2)}x parameters -> ${(b.seconds / a.seconds).toFixed(2)}x time, ${(b.peakRss / a.peakRss).toFixed(2)}x peak RSS; 2x samples -> ${(c.seconds / b.seconds).toFixed(2)}x time, ${(c.peakRss / b.peakRss).toFixed(2)}x peak RSS`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
