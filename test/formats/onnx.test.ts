import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile, copyFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  allGraphs, decodeModel, encodeModel, floatToHalf, halfToFloat, opCounts, readOnnx, writeOnnx, DataType, makeTensor,
} from '../../src/formats/onnx/index.js';
import { InputError } from '../../src/util/errors.js';
import { generateInputs, modelInputs } from '../../src/model/onnx/index.js';
import { REAL_MODELS, SILERO_INPUTS, runFile, tempDir } from '../support/onnx-models.js';

async function assertSameOutputs(a: string, b: string, feedsOpts = SILERO_INPUTS): Promise<void> {
  const model = await readOnnx(a);
  const [feeds] = generateInputs(modelInputs(model), 1, feedsOpts);
  const [ra, rb] = [await runFile(a, feeds!), await runFile(b, feeds!)];
  assert.deepEqual(Object.keys(rb).sort(), Object.keys(ra).sort());
  for (const k of Object.keys(ra)) assert.deepEqual(Array.from(rb[k]!.data as Float32Array), Array.from(ra[k]!.data as Float32Array), `output ${k} differs`);
}

for (const [name, file] of Object.entries(REAL_MODELS)) {
  test(`round trip of ${name} is loss-free: identical outputs in onnxruntime`, async () => {
    const dir = await tempDir();
    const model = await readOnnx(file);
    const out = join(dir, 'model.onnx');
    await writeOnnx(model, out);
    await assertSameOutputs(file, out, name === 'ppocrDet' || name === 'ppocrCls' ? { dims: {}, defaultDim: 64 } as never : SILERO_INPUTS);
    // The re-encoded graph holds the same nodes, subgraphs included.
    assert.deepEqual(opCounts(await readOnnx(out)), opCounts(model));
  });
}

test('subgraphs are walked: silero-vad has If bodies holding Conv and LSTM', async () => {
  const model = await readOnnx(REAL_MODELS.sileroVad);
  const graphs = allGraphs(model);
  assert.ok(graphs.length > 10, `expected nested If subgraphs, got ${graphs.length} graphs`);
  const counts = opCounts(model);
  assert.equal(counts.LSTM, 4);
  assert.ok(counts.If! >= 2 && counts.Conv! > 0);
  assert.equal(model.graph.node.filter((n) => n.op_type === 'Conv').length, 0, 'Conv only inside subgraphs');
});

test('external data: written beside the model as <file>_data, read back, same outputs', async () => {
  const dir = await tempDir();
  const out = join(dir, 'model.onnx');
  const { files } = await writeOnnx(await readOnnx(REAL_MODELS.sileroOp18), out, { externalData: true });
  assert.deepEqual(files, [out, join(dir, 'model.onnx_data')]);
  assert.ok((await stat(out)).size < (await stat(REAL_MODELS.sileroOp18)).size - 2_000_000, 'weights moved out of the protobuf');
  assert.ok((await stat(join(dir, 'model.onnx_data'))).size > 2_000_000);
  await assertSameOutputs(REAL_MODELS.sileroOp18, out);
  // And bake reads external data back in memory: writing it inline again still gives the same model.
  const again = join(dir, 'inline.onnx');
  await writeOnnx(await readOnnx(out), again, { externalData: false });
  await assertSameOutputs(REAL_MODELS.sileroOp18, again);
});

test('external data that points outside the model folder or past the data file is refused', async () => {
  const dir = await tempDir();
  const out = join(dir, 'model.onnx');
  await writeOnnx(await readOnnx(REAL_MODELS.wakeword), out, { externalData: true });
  const model = decodeModel(await readFile(out));
  const t = model.graph.initializer.find((x) => x.data_location === 1)!;
  const loc = t.external_data!.find((e) => e.key === 'location')!;
  loc.value = '../../etc/passwd';
  await writeFile(join(dir, 'escape.onnx'), encodeModel(model));
  await assert.rejects(readOnnx(join(dir, 'escape.onnx')), (e: unknown) => e instanceof InputError && /outside the model's folder/.test(e.message));
  loc.value = 'model.onnx_data';
  t.external_data!.find((e) => e.key === 'offset')!.value = '999999999';
  await writeFile(join(dir, 'range.onnx'), encodeModel(model));
  await assert.rejects(readOnnx(join(dir, 'range.onnx')), (e: unknown) => e instanceof InputError && /does not fit/.test(e.message));
});

test('garbage and missing files give InputError naming the file', async () => {
  const dir = await tempDir();
  const bad = join(dir, 'bad.onnx');
  await writeFile(bad, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  await assert.rejects(readOnnx(bad), (e: unknown) => e instanceof InputError && e.file === bad);
  await assert.rejects(readOnnx(join(dir, 'missing.onnx')), (e: unknown) => e instanceof InputError && /cannot read ONNX model/.test(e.message));
  await copyFile(REAL_MODELS.wakeword, join(dir, 'ok.onnx'));
  const truncated = (await readFile(join(dir, 'ok.onnx'))).subarray(0, 5000);
  await writeFile(join(dir, 'trunc.onnx'), truncated);
  await assert.rejects(readOnnx(join(dir, 'trunc.onnx')), InputError);
  assert.ok(!existsSync(join(dir, 'missing.onnx')));
});

test('float16 conversion rounds half to even and round-trips every half value', () => {
  for (let h = 0; h < 0x7c00; h += 37) assert.equal(floatToHalf(halfToFloat(h)), h);
  assert.equal(floatToHalf(1 + 2 ** -11), floatToHalf(1)); // tie -> even
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), floatToHalf(1 + 2 ** -9)); // tie -> even (up)
  assert.equal(floatToHalf(65520), 0x7c00);
  const t = makeTensor('x', [2], new Float32Array([1.5, -2]));
  assert.equal(t.data_type, DataType.FLOAT);
});

test('generated inputs refuse absurd declared shapes instead of allocating them', () => {
  assert.throws(() => generateInputs([{ name: 'x', elemType: DataType.FLOAT, dims: [100000, 100000] }], 1), (e: unknown) => e instanceof InputError && /too large to generate/.test(e.message));
  const [feeds] = generateInputs([{ name: 'x', elemType: DataType.FLOAT, dims: ['batch', 'seq'] }, { name: 'state', elemType: DataType.FLOAT, dims: [2, '', 128] }], 1, { dims: { seq: 10 } });
  assert.deepEqual(feeds!.x!.dims, [1, 10]);
  assert.deepEqual(feeds!.state!.dims, [2, 1, 128]);
  assert.ok((feeds!.state!.data as Float32Array).every((v) => v === 0), 'recurrent state starts at zero');
});
