// Benchmark: MB/s of F32 input per GGUF type, bake's quantizer vs llama.cpp's llama-quantize on the same
// F32 file with the same thread count, as a ratio (goal >= 1.0x), plus peak RSS of both, and a byte
// comparison of the outputs. Each figure is the median of --runs runs, the two tools alternating.
// Usage: node --import tsx bench/gguf-quantize.ts [--threads 2] [--types Q8_0,Q4_K_M] [--layers 4] [--runs 3]
//   [--keep] [--tsx]
// bake runs compiled to JavaScript (as it ships), not through tsx: tsx's loader would be billed to every
// worker thread. --tsx runs the TypeScript sources instead.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertHfToGguf } from '../src/quant/gguf/index.js';
import { llamaToolsBin, writeRandomLlama } from '../test/support/gguf-fixtures.js';
import { median, numberOption } from './args.js';
import { compileBench, timedRun as timed } from './compile.js';
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const threads = Number(opt('threads', '2'));
const types = opt('types', 'F16,Q8_0,Q4_0,Q4_1,Q5_0,Q5_1,Q4_K_M,Q5_K_M,Q6_K').split(',');
const layers = Number(opt('layers', '4'));
const runs = numberOption('runs', 3);

const dir = await mkdtemp(join(tmpdir(), 'bake-gguf-bench-'));
try {
  const bin = await llamaToolsBin();
  const runner = args.includes('--tsx')
    ? ['--import', 'tsx', join(import.meta.dirname, 'gguf-quantize-run.ts')]
    : [(await compileBench('gguf', ['bench/gguf-quantize-run.ts', 'src/quant/gguf/worker.ts']))[0]!];
  const hf = join(dir, 'hf');
  await writeRandomLlama(hf, { embd: 1024, ff: 2816, layers, heads: 16, kvHeads: 4, vocab: 8192, tied: false }, 9);
  const f32 = join(dir, 'model-F32.gguf');
  await convertHfToGguf(hf, f32, { type: 'F32' });
  const inBytes = (await stat(f32)).size;
  const mb = inBytes / 1e6;
  console.log(`input: random LLaMA, ${layers} layers, F32 GGUF ${mb.toFixed(1)} MB; threads ${threads}; median of ${runs} alternating runs; bake ${args.includes('--tsx') ? 'via tsx' : 'compiled JS'}; load average ${loadavg()[0]!.toFixed(2)}`);
  // Wall-clock MB/s is the figure asked for; MB per CPU-second is shown too because this machine's two cores
  // are shared and wall time swings with other load.
  console.log('type     | bake MB/s | llama.cpp MB/s | ratio | bake MB/cpu-s | llama.cpp MB/cpu-s | cpu ratio | bake RSS MB | llama.cpp RSS MB | identical');
  for (const type of types) {
    const theirsOut = join(dir, `llama-${type}.gguf`);
    const oursOut = join(dir, `bake-${type}.gguf`);
    const theirRuns: Awaited<ReturnType<typeof timed>>[] = [];
    const ourRuns: { seconds: number; cpuSeconds: number; rss: number }[] = [];
    for (let r = 0; r < runs; r++) {
      // Alternate who goes first, so neither always runs on a warmer page cache or a quieter machine.
      const theirsRun = async () => theirRuns.push(await timed(join(bin, 'llama-quantize'), [f32, theirsOut, type, String(threads)]));
      const oursRun = async () => {
        const ours = await timed(process.execPath, [...runner, f32, oursOut, type, String(threads)]);
        // The runner reports the call's own time: node's start-up is not billed to the quantizer.
        const report = JSON.parse(ours.stdout.trim().split('\n').pop()!) as { seconds: number; cpuSeconds: number };
        ourRuns.push({ seconds: report.seconds, cpuSeconds: report.cpuSeconds, rss: ours.rss });
      };
      for (const go of r % 2 ? [oursRun, theirsRun] : [theirsRun, oursRun]) await go();
    }
    const med = <T>(xs: T[], f: (x: T) => number): number => median(xs.map(f));
    const theirs = { seconds: med(theirRuns, (t) => t.seconds), cpuSeconds: med(theirRuns, (t) => t.cpuSeconds), rss: med(theirRuns, (t) => t.rss) };
    const oursSeconds = med(ourRuns, (o) => o.seconds);
    const oursCpu = mb / med(ourRuns, (o) => o.cpuSeconds);
    const theirCpu = mb / theirs.cpuSeconds;
    const ours = { rss: med(ourRuns, (o) => o.rss) };
    const same = (await readFile(oursOut)).equals(await readFile(theirsOut));
    const oursRate = mb / oursSeconds;
    const theirRate = mb / theirs.seconds;
    console.log(`${type.padEnd(8)} | ${oursRate.toFixed(1).padStart(9)} | ${theirRate.toFixed(1).padStart(14)} | ${(oursRate / theirRate).toFixed(2).padStart(5)} | ${oursCpu.toFixed(1).padStart(13)} | ${theirCpu.toFixed(1).padStart(18)} | ${(oursCpu / theirCpu).toFixed(2).padStart(9)} | ${(ours.rss / 1e6).toFixed(0).padStart(11)} | ${(theirs.rss / 1e6).toFixed(0).padStart(16)} | ${same ? 'yes' : 'NO'}`);
    await rm(theirsOut, { force: true });
    await rm(oursOut, { force: true });
  }
} finally {
  if (!args.includes('--keep')) await rm(dir, { recursive: true, force: true });
}
