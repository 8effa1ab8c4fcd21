// Many more blocks than the llama-quantize oracle covers, over eight decades of scale and odd shapes
// (cubed Gaussians, integer grids, spikes, signed zeros, ties, subnormals, the awkward mix), checked block
// by block against ggml's own row quantizers compiled from the same libggml-base.a llama-quantize links.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { ggmlTypeByName } from '../../../src/quant/gguf/types.js';
import { awkwardValues, llamaTools, rng } from '../../support/kquant-gguf.js';

const run = promisify(execFile);
let dir: string;
let harness: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-quant-fuzz-'));
  const bin = await llamaTools();
  harness = join(dir, 'quant-harness');
  const lib = join(bin, '../ggml/src/libggml-base.a');
  await run('cc', ['-O2', join(import.meta.dirname, '../../support/quant-harness.c'), lib, '-lm', '-lpthread', '-fopenmp', '-lstdc++', '-o', harness]);
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Values for n blocks of `block` values, one kind of block after another. */
function values(nb: number, block: number, seed: number): Float32Array {
  const r = rng(seed);
  const awkward = awkwardValues(Math.ceil((nb * block) / 256) * 256, seed);
  const v = new Float32Array(nb * block);
  const bits = new Uint32Array(v.buffer);
  for (let b = 0; b < nb; b++) {
    const kind = b % 10;
    const scale = 10 ** (r.uniform() * 8 - 6);
    for (let i = 0; i < block; i++) {
      const j = b * block + i;
      switch (kind) {
        case 0: v[j] = awkward[j]!; break;
        case 1: v[j] = r.normal() * scale; break;
        case 2: v[j] = (r.uniform() - 0.3) * scale; break;
        case 3: v[j] = r.normal() ** 3 * scale; break;
        case 4: v[j] = Math.round(r.normal() * 7) * scale; break;
        case 5: v[j] = i % 32 === 0 ? scale : 0; break;
        // Signed zeros only, or mixed with positives / negatives: their order decides a stored sign.
        case 6: v[j] = r.uniform() < 0.5 ? -0 : r.uniform() < 0.3 ? 0 : (b & 2 ? 1 : -1) * r.uniform() * scale; break;
        // Ties of magnitude (+a and -a): the first one found sets the scale's sign.
        case 7: v[j] = (r.uniform() < 0.5 ? -1 : 1) * Math.round(r.uniform() * 4) * scale; break;
        // Subnormal and near-overflow magnitudes.
        case 8: bits[j] = Math.floor(r.uniform() * 0x00800000) | (r.uniform() < 0.5 ? 0x80000000 : 0); break;
        default: v[j] = r.normal() * (b & 1 ? 1e37 : 1e-38); break;
      }
    }
  }
  return v;
}

/** Every float32 bit pattern class for the 16-bit types: NaNs, infinities, subnormals, rounding ties. */
function bitPatterns(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const e = Math.floor(r.uniform() * 256);
    const tail = [0, 1, 0xfff, 0x1000, 0x1001, 0x2000, 0x7fff, 0x8000, 0x8001, 0x7fffff][i % 10]!;
    bits[i] = (i % 3 === 0 ? Math.floor(r.uniform() * 2 ** 32) : (e << 23) | (r.uniform() < 0.5 ? tail : Math.floor(r.uniform() * 0x800000)) | (r.uniform() < 0.5 ? 0x80000000 : 0)) >>> 0;
  }
  return new Float32Array(bits.buffer);
}

/**
 * Blocks with a NaN, an infinity, or a range that overflows, among ordinary values: where the 32-value
 * quantizers leave their fast path (an infinite or NaN scale) for C's exact x86 conversions.
 */
function specialBlocks(nb: number, seed: number): Float32Array {
  const r = rng(seed);
  const v = new Float32Array(nb * 32);
  for (let b = 0; b < nb; b++) {
    const scale = 10 ** (r.uniform() * 8 - 6);
    for (let i = 0; i < 32; i++) v[b * 32 + i] = r.normal() * scale;
    const at = b * 32 + Math.floor(r.uniform() * 32);
    switch (b % 6) {
      case 0: v[at] = NaN; break;
      case 1: v[at] = Infinity; break;
      case 2: v[at] = -Infinity; break;
      case 3: v[at] = 3e38; v[b * 32 + ((at + 7) % 32)] = -3e38; break; // max - min overflows
      case 4: for (let i = 0; i < 32; i++) v[b * 32 + i] = NaN; break;
      default: v[at] = NaN; v[b * 32 + ((at + 3) % 32)] = Infinity; break;
    }
  }
  return v;
}

async function ggml(typeId: number, v: Float32Array): Promise<Buffer> {
  const child = execFile(harness, [String(typeId)], { encoding: 'buffer', maxBuffer: 1 << 28 });
  const done = new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`harness exited ${code}`))));
  });
  child.stdin!.end(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  return done;
}

const CASES = [
  { type: 'F16', blocks: 400_000, input: () => bitPatterns(400_000, 31) },
  { type: 'BF16', blocks: 400_000, input: () => bitPatterns(400_000, 32) },
  ...['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0'].map((type, i) => ({ type, blocks: 40_000, input: () => values(40_000, 32, 200 + i) })),
  ...['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0'].map((type, i) => ({ type, blocks: 6_000, input: () => specialBlocks(6_000, 300 + i) })),
  ...['Q4_K', 'Q5_K', 'Q6_K'].map((type, i) => ({ type, blocks: 6000, input: () => values(6000, 256, 112 + i) })),
];

for (const c of CASES) {
  test(`${c.type}: ${c.blocks.toLocaleString('en-US')} varied blocks byte-identical with ggml's reference`, async () => {
    const type = ggmlTypeByName(c.type)!;
    const v = c.input();
    const theirs = await ggml(type.id, v);
    const ours = new Uint8Array(c.blocks * type.bytesPerBlock);
    type.quantize(v, ours);
    assert.equal(theirs.length, ours.length);
    const bad: number[] = [];
    const n = type.bytesPerBlock;
    for (let b = 0; b < c.blocks; b++) {
      if (!theirs.subarray(b * n, (b + 1) * n).equals(ours.subarray(b * n, (b + 1) * n))) bad.push(b);
    }
    const show = bad.slice(0, 5).map((b) => `block ${b}: in ${Array.from(v.subarray(b * type.blockSize, (b + 1) * type.blockSize).slice(0, 4))}..., ours ${Buffer.from(ours.subarray(b * n, (b + 1) * n)).toString('hex').slice(0, 40)} ggml ${theirs.subarray(b * n, (b + 1) * n).toString('hex').slice(0, 40)}`);
    assert.deepEqual(show, [], `${bad.length} of ${c.blocks} blocks differ`);
  });
}
