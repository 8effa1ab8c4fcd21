// Byte identity of the K-quant kernels with llama.cpp's own llama-quantize (reference C, no imatrix), and
// of the dequantizers with llama-quantize's dequantization (requantizing to F32).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  dequantizeRowQ4_K, dequantizeRowQ5_K, dequantizeRowQ6_K, quantizeRowQ4_K, quantizeRowQ5_K, quantizeRowQ6_K,
  Q4_K_BLOCK_BYTES, Q5_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES,
} from '../../../src/quant/gguf/kquants.js';
import {
  encodeGguf, GGML_TYPE, llamaQuantize, llamaTools, randomLlamaKv, randomLlamaWeights, readGgufTensors, type TensorOut,
} from '../../support/kquant-gguf.js';

const SHAPE = { embd: 256, ff: 768, layers: 2, heads: 4, kvHeads: 2 };
const KINDS = [
  { name: 'Q4_K', type: GGML_TYPE.Q4_K, bytes: Q4_K_BLOCK_BYTES, quantize: quantizeRowQ4_K, dequantize: dequantizeRowQ4_K },
  { name: 'Q5_K', type: GGML_TYPE.Q5_K, bytes: Q5_K_BLOCK_BYTES, quantize: quantizeRowQ5_K, dequantize: dequantizeRowQ5_K },
  { name: 'Q6_K', type: GGML_TYPE.Q6_K, bytes: Q6_K_BLOCK_BYTES, quantize: quantizeRowQ6_K, dequantize: dequantizeRowQ6_K },
];

let dir: string;
let bin: string;
let source: Map<string, TensorOut>;
const srcPath = (): string => join(dir, 'random-f32.gguf');

function f32(data: Uint8Array): Float32Array {
  return new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

/** First differing byte as text, or undefined; saying which block and offset makes a failure debuggable. */
function firstDiff(a: Uint8Array, b: Uint8Array, blockBytes: number): string | undefined {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return `block ${Math.floor(i / blockBytes)} byte ${i % blockBytes}: ours ${a[i]} llama.cpp ${b[i]}`;
  }
  return undefined;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-kquant-'));
  bin = await llamaTools();
  const tensors = randomLlamaWeights(SHAPE, 7);
  await writeFile(srcPath(), encodeGguf(await randomLlamaKv(SHAPE), tensors));
  source = await readGgufTensors(srcPath());
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

for (const kind of KINDS) {
  describe(`${kind.name} against llama-quantize`, () => {
    let quantPath: string;
    let quantized: Map<string, TensorOut>;
    before(async () => {
      quantPath = join(dir, `random-${kind.name}.gguf`);
      await llamaQuantize(bin, srcPath(), quantPath, kind.name);
      quantized = await readGgufTensors(quantPath);
    });

    test('every 2-D weight is byte-identical', () => {
      let compared = 0;
      for (const [name, q] of quantized) {
        if (q.dims.length < 2) continue;
        assert.equal(q.type, kind.type, `${name}: llama-quantize chose type ${q.type}, expected ${kind.name}`);
        const values = f32(source.get(name)!.data);
        const ours = new Uint8Array((values.length / 256) * kind.bytes);
        kind.quantize(values, ours);
        const diff = firstDiff(ours, q.data, kind.bytes);
        assert.equal(diff, undefined, `${name} (${values.length} values): ${diff}`);
        compared++;
      }
      assert.equal(compared, 2 + SHAPE.layers * 7);
    });

    test('row by row equals the whole tensor at once (blocks are independent)', () => {
      const t = source.get('blk.0.ffn_down.weight')!;
      const values = f32(t.data);
      const rowLen = t.dims[0]!;
      const whole = new Uint8Array((values.length / 256) * kind.bytes);
      kind.quantize(values, whole);
      const rowBytes = (rowLen / 256) * kind.bytes;
      for (let r = 0; r < t.dims[1]!; r++) {
        const row = new Uint8Array(rowBytes);
        kind.quantize(values.subarray(r * rowLen, (r + 1) * rowLen), row);
        assert.deepEqual(row, whole.subarray(r * rowBytes, (r + 1) * rowBytes));
      }
    });

    test('dequantization equals llama.cpp dequantizing the same file (bit for bit)', async () => {
      const f32Path = join(dir, `random-${kind.name}-deq.gguf`);
      await llamaQuantize(bin, quantPath, f32Path, 'F32', true, ['--allow-requantize']);
      const deq = await readGgufTensors(f32Path);
      let compared = 0;
      for (const [name, q] of quantized) {
        if (q.type !== kind.type) continue;
        const theirs = new Uint32Array(f32(deq.get(name)!.data).buffer);
        const oursF = new Float32Array(theirs.length);
        kind.dequantize(q.data, oursF);
        const ours = new Uint32Array(oursF.buffer);
        const bad = ours.findIndex((v, i) => v !== theirs[i]);
        assert.equal(bad, -1, `${name}[${bad}]: ours ${oursF[bad]} llama.cpp ${new Float32Array(theirs.buffer)[bad]}`);
        compared++;
      }
      assert.equal(compared, 2 + SHAPE.layers * 7);
    });
  });
}
