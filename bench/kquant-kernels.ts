// Benchmark: single-thread throughput (MB/s of F32 input) of bake's Q4_K / Q5_K / Q6_K kernels against
// llama.cpp's llama-quantize --pure on the same F32 GGUF with one thread, as a ratio, plus a byte check
// of every tensor. llama-quantize's time is wall time of the whole tool (read, quantize, write), so its
// rate is slightly understated; ours is the kernels alone on data already in memory.
//   node --import tsx bench/kquant-kernels.ts [--layers 4] [--types Q4_K,Q5_K,Q6_K] [--runs 3]
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  Q4_K_BLOCK_BYTES, Q5_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES, quantizeRowQ4_K, quantizeRowQ5_K, quantizeRowQ6_K,
} from '../src/quant/gguf/kquants.js';
import { encodeGguf, llamaTools, randomLlamaKv, randomLlamaWeights, readGgufTensors } from '../test/support/kquant-gguf.js';

const run = promisify(execFile);
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const layers = Number(opt('layers', '4'));
const runs = Number(opt('runs', '3'));
const types = opt('types', 'Q4_K,Q5_K,Q6_K').split(',');
const KERNELS: Record<string, [(s: Float32Array, d: Uint8Array) => void, number]> = {
  Q4_K: [quantizeRowQ4_K, Q4_K_BLOCK_BYTES],
  Q5_K: [quantizeRowQ5_K, Q5_K_BLOCK_BYTES],
  Q6_K: [quantizeRowQ6_K, Q6_K_BLOCK_BYTES],
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const dir = await mkdtemp(join(tmpdir(), 'bake-kquant-bench-'));
try {
  const bin = await llamaTools();
  const shape = { embd: 1024, ff: 2816, layers, heads: 16, kvHeads: 4 };
  const tensors = randomLlamaWeights(shape, 5, false);
  const f32 = join(dir, 'f32.gguf');
  await writeFile(f32, encodeGguf(await randomLlamaKv(shape), tensors));
  const weights = tensors.filter((t) => t.dims.length >= 2).map((t) => ({
    name: t.name,
    values: new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)),
  }));
  const mb = weights.reduce((a, w) => a + w.values.byteLength, 0) / 1e6;
  console.log(`input: random LLaMA (embd 1024, ff 2816, ${layers} layers), ${mb.toFixed(1)} MB of F32 weights in a ${((await stat(f32)).size / 1e6).toFixed(1)} MB GGUF; 1 thread; median of ${runs}`);
  console.log('type | bake MB/s | llama-quantize MB/s | ratio | identical tensors');
  for (const type of types) {
    const [kernel, blockBytes] = KERNELS[type]!;
    const out = join(dir, `${type}.gguf`);
    const theirsS: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t0 = process.hrtime.bigint();
      await run(join(bin, 'llama-quantize'), ['--pure', f32, out, type, '1'], { maxBuffer: 1 << 26 });
      theirsS.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const ours = weights.map((w) => new Uint8Array((w.values.length / 256) * blockBytes));
    const oursS: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t0 = process.hrtime.bigint();
      weights.forEach((w, i) => kernel(w.values, ours[i]!));
      oursS.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const theirs = await readGgufTensors(out);
    const same = weights.filter((w, i) => Buffer.from(ours[i]!).equals(Buffer.from(theirs.get(w.name)!.data))).length;
    const oursRate = mb / median(oursS);
    const theirsRate = mb / median(theirsS);
    console.log(`${type} | ${oursRate.toFixed(1)} | ${theirsRate.toFixed(1)} | ${(oursRate / theirsRate).toFixed(2)}x | ${same}/${weights.length}`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
