// Many more blocks than the llama-quantize oracle covers, over eight decades of scale and odd shapes
// (cubed Gaussians, integer grids, spikes, the awkward mix), checked block by block against ggml's own
// quantize_row_qN_K_ref compiled from the same libggml-base.a llama-quantize links.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { quantizeRowQ4_K, quantizeRowQ5_K, quantizeRowQ6_K } from '../../src/quant/gguf/kquants.js';
import { awkwardValues, llamaTools, rng } from '../support/kquant-gguf.js';

const run = promisify(execFile);
let dir: string;
let harness: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-kquant-fuzz-'));
  const bin = await llamaTools();
  harness = join(dir, 'kquant-harness');
  const lib = join(bin, '../ggml/src/libggml-base.a');
  await run('cc', ['-O2', join(import.meta.dirname, '../support/kquant-harness.c'), lib, '-lm', '-lpthread', '-fopenmp', '-lstdc++', '-o', harness]);
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function values(nb: number, seed: number): Float32Array {
  const r = rng(seed);
  const awkward = awkwardValues(nb * 256, seed);
  const v = new Float32Array(nb * 256);
  for (let b = 0; b < nb; b++) {
    const kind = b % 6;
    const scale = 10 ** (r.uniform() * 8 - 6);
    for (let i = 0; i < 256; i++) {
      const j = b * 256 + i;
      switch (kind) {
        case 0: v[j] = awkward[j]!; break;
        case 1: v[j] = r.normal() * scale; break;
        case 2: v[j] = (r.uniform() - 0.3) * scale; break;
        case 3: v[j] = r.normal() ** 3 * scale; break;
        case 4: v[j] = Math.round(r.normal() * 7) * scale; break;
        default: v[j] = i % 32 === 0 ? scale : 0; break;
      }
    }
  }
  return v;
}

const KINDS = [
  { name: 'Q4_K', id: 12, bytes: 144, quantize: quantizeRowQ4_K },
  { name: 'Q5_K', id: 13, bytes: 176, quantize: quantizeRowQ5_K },
  { name: 'Q6_K', id: 14, bytes: 210, quantize: quantizeRowQ6_K },
];

for (const kind of KINDS) {
  test(`${kind.name}: 6,000 varied blocks byte-identical with ggml's reference`, async () => {
    const nb = 6000;
    const v = values(nb, 100 + kind.id);
    const child = execFile(harness, [String(kind.id)], { encoding: 'buffer', maxBuffer: 1 << 28 });
    const done = new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      child.stdout!.on('data', (c: Buffer) => chunks.push(c));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`harness exited ${code}`))));
    });
    child.stdin!.end(Buffer.from(v.buffer));
    const theirs = await done;
    const ours = new Uint8Array(nb * kind.bytes);
    kind.quantize(v, ours);
    assert.equal(theirs.length, ours.length);
    const bad: number[] = [];
    for (let b = 0; b < nb; b++) {
      if (!theirs.subarray(b * kind.bytes, (b + 1) * kind.bytes).equals(ours.subarray(b * kind.bytes, (b + 1) * kind.bytes))) bad.push(b);
    }
    assert.deepEqual(bad.slice(0, 10), [], `${bad.length} blocks differ`);
  });
}
