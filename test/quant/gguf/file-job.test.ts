// File jobs: rows read from a file straight into the kernels' memory, widened there from F16 / BF16
// (every one of the 65536 half values, NaN payloads included), quantized, and written at their place in
// the output; the same bytes as the in-memory path; a truncated input is an error, not garbage.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FP16_TO_FP32 } from '../../../src/formats/fp16.js';
import { FileJobRunner } from '../../../src/quant/gguf/file-job.js';
import { ggmlTypeByName, tensorBytes } from '../../../src/quant/gguf/types.js';
import { weights } from '../../support/gguf-fixtures.js';

async function scratch(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-file-job-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('F16 and BF16 inputs are widened exactly: every half value, NaN payloads included', async (t) => {
  const dir = await scratch(t);
  const all = new Uint16Array(65536).map((_v, i) => i);
  const pad = 100; // the data does not start at the file's beginning
  await writeFile(join(dir, 'in.bin'), Buffer.concat([Buffer.alloc(pad, 0xaa), Buffer.from(all.buffer)]));
  await writeFile(join(dir, 'out.bin'), Buffer.alloc(pad + 65536 * 4 + 8, 0xee));
  const runner = new FileJobRunner();
  t.after(() => runner.close());
  for (const source of ['F16', 'BF16']) {
    const wrote = runner.run({ target: 'F32', source, inPath: join(dir, 'in.bin'), inPos: pad, values: 65536, outPath: join(dir, 'out.bin'), outPos: pad });
    assert.equal(wrote, 65536 * 4);
    const out = await readFile(join(dir, 'out.bin'));
    assert.ok(out.subarray(0, pad).equals(Buffer.alloc(pad, 0xee)), 'nothing written before the place');
    assert.ok(out.subarray(pad + 65536 * 4).equals(Buffer.alloc(8, 0xee)), 'nor after');
    const bits = new Uint32Array(out.buffer.slice(out.byteOffset + pad, out.byteOffset + pad + 65536 * 4));
    const table = new Uint32Array(FP16_TO_FP32.buffer);
    for (let h = 0; h < 65536; h++) {
      const want = source === 'F16' ? table[h]! : (h << 16) >>> 0;
      if (bits[h] !== want) assert.fail(`${source} 0x${h.toString(16)}: got 0x${bits[h]!.toString(16)}, want 0x${want.toString(16)}`);
    }
  }
});

test('every target from an F32, F16 or BF16 file equals the in-memory quantizer, written at its offset; same type is copied', async (t) => {
  const dir = await scratch(t);
  const rowLength = 512;
  const rows = 700; // more than one slice of the kernels' memory for the narrow types
  const values = weights(rowLength * rows, 3);
  const f32 = Buffer.from(values.buffer);
  const f16 = Buffer.alloc(values.length * 2);
  ggmlTypeByName('F16')!.quantize(values, f16);
  const bf16 = Buffer.alloc(values.length * 2);
  ggmlTypeByName('BF16')!.quantize(values, bf16);
  const inputs: Record<string, Buffer> = { F32: f32, F16: f16, BF16: bf16 };
  const runner = new FileJobRunner();
  t.after(() => runner.close());
  for (const [source, bytes] of Object.entries(inputs)) {
    await writeFile(join(dir, `in-${source}.bin`), bytes);
    // The values as the kernels see them: the input widened back to float32.
    const seen = new Float32Array(values.length);
    ggmlTypeByName(source)!.dequantize(bytes, seen);
    for (const target of ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K']) {
      const type = ggmlTypeByName(target)!;
      const size = tensorBytes(type, [rowLength, rows])!;
      const expected = new Uint8Array(size);
      type.quantize(seen, expected);
      const out = join(dir, `out-${source}-${target}.bin`);
      await writeFile(out, Buffer.alloc(size + 64));
      // Two jobs, the second half first: each lands at its own place.
      const half = (rows / 2) * rowLength;
      const perValue = size / values.length;
      const job = (from: number, n: number) => ({ target, source, inPath: join(dir, `in-${source}.bin`), inPos: from * (bytes.length / values.length), values: n, outPath: out, outPos: 64 + from * perValue });
      runner.run(job(half, values.length - half));
      runner.run(job(0, half));
      const got = (await readFile(out)).subarray(64);
      assert.ok(got.equals(expected), `${source} -> ${target}`);
    }
  }
});

test('a file shorter than the rows it should hold is an error naming it', async (t) => {
  const dir = await scratch(t);
  await writeFile(join(dir, 'short.bin'), Buffer.alloc(1000));
  await writeFile(join(dir, 'out.bin'), Buffer.alloc(0));
  const runner = new FileJobRunner();
  t.after(() => runner.close());
  assert.throws(() => runner.run({ target: 'Q8_0', source: 'F32', inPath: join(dir, 'short.bin'), inPos: 0, values: 1024, outPath: join(dir, 'out.bin'), outPos: 0 }), /short\.bin ends at byte 1000/);
});

test('requantizing a file that is cut short under the workers rejects and leaves neither the output nor a temp file', async (t) => {
  const dir = await scratch(t);
  const { writeRandomLlama } = await import('../../support/gguf-fixtures.js');
  const { convertHfToGguf, requantizeGguf } = await import('../../../src/quant/gguf/index.js');
  const { readdir, truncate, stat, mkdir } = await import('node:fs/promises');
  await writeRandomLlama(join(dir, 'hf'), { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: false }, 5);
  const f32 = join(dir, 'model-F32.gguf');
  await convertHfToGguf(join(dir, 'hf'), f32, { type: 'F32' });
  const { ggufModelSource } = await import('../../../src/quant/gguf/gguf-source.js');
  const source = await ggufModelSource(f32);
  assert.ok(source.tensors.every((x) => 'stored' in x), 'a GGUF source says where its tensors are');
  const out = join(dir, 'out');
  await mkdir(out);
  const good = await requantizeGguf(f32, join(out, 'good.gguf'), { type: 'Q8_0', threads: 2 });
  assert.ok(good.bytes > 0);
  await rm(join(out, 'good.gguf'));
  // Cut after the header was read: the workers meet the end of the file.
  const { writeModel } = await import('../../../src/quant/gguf/index.js');
  await truncate(f32, (await stat(f32)).size - 100_000);
  await assert.rejects(writeModel(source, join(out, 'model.gguf'), { type: 'Q8_0', threads: 2 }), /model-F32\.gguf ends at byte/);
  assert.deepEqual(await readdir(out), []);
});
