// Benchmark: wall time of verifyGguf (node-llama-cpp, two passes: source then quantized, plus the
// generation smoke check) against llama.cpp's own llama-perplexity doing the same measurement
// (--kl-divergence-base on the source, then --kl-divergence on the quantized file), both on one thread,
// on stories260K Q4_K_M with the shared eval text. Prints both times, their ratio and both KLDs.
//   node --import tsx bench/kquant-verify.ts [--ctx 128] [--runs 3]
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifyGguf } from '../src/verify/llama/index.js';
import { EVAL_TEXT, llamaPerplexityKld, llamaQuantize, llamaTools, writeStories260KF32 } from '../test/support/kquant-gguf.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const ctx = Number(opt('ctx', '128'));
const runs = Number(opt('runs', '3'));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const dir = await mkdtemp(join(tmpdir(), 'bake-kquant-verify-bench-'));
try {
  const bin = await llamaTools();
  const f32 = await writeStories260KF32(join(dir, 'f32.gguf'));
  const quant = join(dir, 'q4km.gguf');
  await llamaQuantize(bin, f32, quant, 'Q4_K_M', false);
  const evalText = await readFile(EVAL_TEXT, 'utf8');
  await verifyGguf('warm-up', f32, quant, {}, { evalText, ctx, generateTokens: 0 }); // loads the binding once
  const ours: number[] = [];
  const theirs: number[] = [];
  let kld = 0;
  let refKld = 0;
  for (let r = 0; r < runs; r++) {
    let t0 = process.hrtime.bigint();
    const report = await verifyGguf('stories260K', f32, quant, {}, { evalText, ctx });
    ours.push(Number(process.hrtime.bigint() - t0) / 1e9);
    kld = report.metrics.kld_mean!;
    const runDir = await mkdtemp(join(dir, 'ref-')); // fresh: the base pass is part of the measurement
    t0 = process.hrtime.bigint();
    refKld = (await llamaPerplexityKld(bin, f32, quant, EVAL_TEXT, ctx, runDir)).kldMean;
    theirs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  console.log(`stories260K Q4_K_M vs F32, ctx ${ctx}, 1 thread, median of ${runs}`);
  console.log(`verifyGguf ${median(ours).toFixed(2)} s (KLD ${kld.toFixed(6)}, includes 2x32-token generation) | llama-perplexity base+kld ${median(theirs).toFixed(2)} s (KLD ${refKld.toFixed(6)}) | ratio (theirs/ours) ${(median(theirs) / median(ours)).toFixed(2)}x`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
