// src/data: folders of images, WAV clips and .npy arrays decoded into the tensor one model input takes, with
// the recipe's preprocessing; bad folders and files are bad input naming the field and the file.
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import wavefile from 'wavefile';
import { dataDigest, loadSamples, openDataset, type InputTarget } from '../../src/data/index.js';
import { parseNpy } from '../../src/data/npy.js';
import type { DataSpec } from '../../src/recipe/types.js';
import { InputError } from '../../src/util/errors.js';
import { dataInput } from '../../src/model/onnx/index.js';
import { tempDir } from '../support/onnx-models.js';

const ctx = (baseDir: string) => ({ field: 'verify.data', baseDir });

async function load(spec: DataSpec, base: string, target: InputTarget) {
  const c = ctx(base);
  return loadSamples(await openDataset(spec, c), spec, target, c);
}

const isInputError = (field: string, re?: RegExp) => (e: unknown) => e instanceof InputError && e.exit === 'usage' && e.field === field && (!re || re.test(e.message));

/** An .npy file as np.save writes it (version 1, header padded to a multiple of 64). */
function npy(descr: string, shape: number[], data: ArrayBufferView, opts: { fortran?: boolean } = {}): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': ${opts.fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
  const h = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(h);
  h.writeUInt16LE(header.length, 8);
  return Buffer.concat([h, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

test('images: RGB/BGR order, NCHW/NHWC layout, normalization, transparent pixels on white, aspect resize with padding', async () => {
  const base = await tempDir('bake-data-');
  await mkdir(join(base, 'img'));
  // One row: red, blue, transparent.
  const px = Buffer.from([255, 0, 0, 255, 0, 0, 255, 255, 0, 0, 0, 0]);
  await sharp(px, { raw: { width: 3, height: 1, channels: 4 } }).png().toFile(join(base, 'img', 'a.png'));
  const spec: DataSpec = { path: 'img', kind: 'images' };
  const [rgb] = await load(spec, base, { name: 'x', dtype: 'float32', dims: ['N', 3, 1, 3] });
  assert.deepEqual(rgb!.dims, [1, 3, 1, 3]);
  assert.deepEqual(Array.from(rgb!.data as Float32Array), [1, 0, 1, 0, 0, 1, 0, 1, 1]);
  const [bgr] = await load({ ...spec, preprocess: { channels: 'BGR', normalize: { mean: [0.5], std: [0.5] } } }, base, { name: 'x', dtype: 'float32', dims: ['N', 3, 1, 3] });
  assert.deepEqual(Array.from(bgr!.data as Float32Array), [-1, 1, 1, -1, -1, 1, 1, -1, 1]);
  const [nhwc] = await load({ ...spec, preprocess: { layout: 'NHWC' } }, base, { name: 'x', dtype: 'float32', dims: [1, 1, 3, 3] });
  assert.deepEqual(nhwc!.dims, [1, 1, 3, 3]);
  assert.deepEqual(Array.from(nhwc!.data as Float32Array), [1, 0, 0, 0, 0, 1, 1, 1, 1]);
  const [inferred] = await load(spec, base, { name: 'x', dtype: 'float32', dims: ['N', 2, 6, 3] });
  assert.deepEqual(inferred!.dims, [1, 2, 6, 3], 'channels last when the last axis is 3 and the second is not a channel count');
  // keep_aspect: height 2 makes the 3x1 picture 6 wide; pad fills up to 8 with pad_value.
  const [padded] = await load({ ...spec, preprocess: { resize: { height: 2, width: 8, keep_aspect: true, pad: true }, pad_value: -5, channels: 'gray' } }, base, { name: 'x', dtype: 'float32', dims: ['N', 1, '?', '?'] });
  assert.deepEqual(padded!.dims, [1, 1, 2, 8]);
  const row = Array.from(padded!.data as Float32Array).slice(0, 8);
  assert.deepEqual(row.slice(6), [-5, -5]);
  assert.ok(row.slice(0, 6).every((v) => v >= 0 && v <= 1) && row[5]! > 0.9, `grey values, white where transparent: ${row}`);
  // Stretch to [h, w]; a fixed model size is the default.
  const [fixed] = await load(spec, base, { name: 'x', dtype: 'float32', dims: [1, 3, 4, 5] });
  assert.deepEqual(fixed!.dims, [1, 3, 4, 5]);
  const [stretched] = await load({ ...spec, preprocess: { resize: [7, 2] } }, base, { name: 'x', dtype: 'float32', dims: [1, 3, '?', '?'] });
  assert.deepEqual(stretched!.dims, [1, 3, 7, 2]);
});

test('audio: WAV samples as floats, channels averaged, resampled, cropped or zero-padded to the model length', async () => {
  const base = await tempDir('bake-data-');
  await mkdir(join(base, 'wav'));
  const wav = new wavefile.WaveFile();
  wav.fromScratch(2, 8000, '16', [new Int16Array([16384, -16384, 8192, 0]), new Int16Array([0, 0, 8192, 32767])]);
  await writeFile(join(base, 'wav', 'a.wav'), wav.toBuffer());
  const spec: DataSpec = { path: 'wav', kind: 'audio' };
  const [s] = await load(spec, base, { name: 'input', dtype: 'float32', dims: ['batch', 'samples'] });
  assert.deepEqual(s!.dims, [1, 4]);
  const v = Array.from(s!.data as Float32Array);
  assert.ok(Math.abs(v[0]! - 0.25) < 1e-3 && Math.abs(v[1]! + 0.25) < 1e-3 && Math.abs(v[2]! - 0.25) < 1e-3 && Math.abs(v[3]! - 0.5) < 1e-3, `mono mix ${v}`);
  const [up] = await load({ ...spec, preprocess: { sample_rate: 16000 } }, base, { name: 'input', dtype: 'float32', dims: ['batch', 'samples'] });
  assert.equal(up!.dims[1], 8);
  const [fixed] = await load(spec, base, { name: 'input', dtype: 'float32', dims: [1, 1, 6] });
  assert.deepEqual(fixed!.dims, [1, 1, 6]);
  assert.deepEqual(Array.from(fixed!.data as Float32Array).slice(4), [0, 0]);
  const [cropped] = await load({ ...spec, preprocess: { length: 2, normalize: { scale: 2 } } }, base, { name: 'input', dtype: 'float32', dims: ['b', 'n'] });
  assert.deepEqual(cropped!.dims, [1, 2]);
  assert.ok(Math.abs((cropped!.data as Float32Array)[0]! - 0.5) < 1e-3);
  await writeFile(join(base, 'wav', 'b.wav'), 'RIFF not really');
  await assert.rejects(load(spec, base, { name: 'input', dtype: 'float32', dims: ['b', 'n'] }), isInputError('verify.data.path', /b\.wav.*WAV/));
});

test('npy: dtypes converted to the input type, a missing batch axis added; malformed files refused', async () => {
  const base = await tempDir('bake-data-');
  await mkdir(join(base, 'arr'));
  const values = Float32Array.from({ length: 6 }, (_, i) => i / 2);
  await writeFile(join(base, 'arr', 'a.npy'), npy('<f4', [2, 3], values));
  await writeFile(join(base, 'arr', 'b.npy'), npy('<f8', [1, 2, 3], Float64Array.from(values)));
  const spec: DataSpec = { path: 'arr', kind: 'npy' };
  const samples = await load(spec, base, { name: 'x', dtype: 'float32', dims: [1, 2, 3] });
  assert.deepEqual(samples.map((s) => s.dims), [[1, 2, 3], [1, 2, 3]]);
  assert.deepEqual(Array.from(samples[0]!.data as Float32Array), Array.from(values));
  assert.deepEqual(Array.from(samples[1]!.data as Float32Array), Array.from(values));
  const ints = await tempDir('bake-data-');
  await writeFile(join(ints, 'ids.npy'), npy('<i8', [1, 4], BigInt64Array.from([101n, 7n, 8n, 102n])));
  const [ids] = await load({ path: '.', kind: 'npy' }, ints, { name: 'input_ids', dtype: 'int64', dims: ['batch', 'seq'] });
  assert.deepEqual(Array.from(ids!.data as BigInt64Array), [101n, 7n, 8n, 102n]);
  // Float arrays cannot feed integer inputs; shapes must match the fixed dims.
  await assert.rejects(load(spec, base, { name: 'input_ids', dtype: 'int64', dims: [1, 2, 3] }), isInputError('verify.data.path', /f4 values/));
  await assert.rejects(load(spec, base, { name: 'x', dtype: 'float32', dims: [1, 25, 96] }), isInputError('verify.data.path', /a\.npy gives a tensor of shape \[1, 2, 3\] but model input x takes \[1, 25, 96\]/));
  assert.throws(() => parseNpy(npy('>f4', [2], new Float32Array(2))), /big-endian/);
  assert.throws(() => parseNpy(npy('<f4', [2, 3], new Float32Array(6), { fortran: true })), /Fortran/);
  assert.throws(() => parseNpy(npy('<f4', [2, 3], new Float32Array(5))), /needs 24 data bytes, the file has 20/);
  assert.throws(() => parseNpy(npy('<c8', [1], new Float32Array(2))), /not a numeric type/);
  assert.throws(() => parseNpy(Buffer.from('PK\x03\x04 a zip, not an array')), /not an \.npy file/);
  const huge = npy('<f4', [1], new Float32Array(1));
  huge.writeUInt16LE(60000, 8);
  assert.throws(() => parseNpy(huge), /past the end/);
});

test('bad folders and files: exit 2 naming the field (and the file)', async () => {
  const base = await tempDir('bake-data-');
  const target: InputTarget = { name: 'x', dtype: 'float32', dims: [1, 3, '?', '?'] };
  await assert.rejects(openDataset({ path: 'nope', kind: 'images' }, ctx(base)), isInputError('verify.data.path', /nope is not a readable folder/));
  await mkdir(join(base, 'docs'));
  await writeFile(join(base, 'docs', 'README.txt'), 'not an image');
  await assert.rejects(openDataset({ path: 'docs', kind: 'images' }, ctx(base)), isInputError('verify.data.path', /holds no images file/));
  await writeFile(join(base, 'docs', 'broken.png'), 'not a png at all');
  await assert.rejects(load({ path: 'docs', kind: 'images' }, base, target), (e: unknown) => isInputError('verify.data.path', /cannot decode .*broken\.png as an image/)(e) && (e as InputError).file!.endsWith('broken.png'));
  await assert.rejects(load({ path: 'docs', kind: 'images' }, base, { ...target, dims: [1, 25, 96] }), isInputError('verify.data.input', /rank 4/));
  await assert.rejects(load({ path: 'docs', kind: 'npy', preprocess: { resize: [2, 2] } } as DataSpec, base, target), isInputError('verify.data.path'));
  const outside = await tempDir('bake-outside-');
  await writeFile(join(outside, 'secret.npy'), npy('<f4', [1], new Float32Array(1)));
  await mkdir(join(base, 'linked'));
  await symlink(join(outside, 'secret.npy'), join(base, 'linked', 'a.npy'));
  await assert.rejects(openDataset({ path: 'linked', kind: 'npy' }, ctx(base)), isInputError('verify.data.path', /links outside its folder/));
  await writeFile(join(base, 'linked', 'b.npy'), npy('<f4', [2, 2], new Float32Array(4)));
  await assert.rejects(loadSamples({ dir: join(base, 'linked'), files: ['b.npy'], digest: '' }, { path: 'linked', kind: 'npy', preprocess: { length: 3 } }, target, ctx(base)), isInputError('verify.data.preprocess.length', /does not apply to npy/));
  // Which input: named, or the only float one that is not state or a rate.
  const inputs = [{ name: 'input', elemType: 1, dims: ['b', 'n'] }, { name: 'state', elemType: 1, dims: [2, 'b', 128] }, { name: 'sr', elemType: 7, dims: [] }];
  assert.equal(dataInput(inputs, undefined, 'verify.data').name, 'input');
  assert.throws(() => dataInput(inputs, 'audio', 'verify.data'), isInputError('verify.data.input', /no input "audio"/));
  assert.throws(() => dataInput([...inputs, { name: 'other', elemType: 1, dims: [1] }], undefined, 'verify.data'), isInputError('verify.data.input', /cannot tell which model input/));
});

test('the digest follows the files read: same bytes same digest, a changed sample a new one, other files ignored', async () => {
  const base = await tempDir('bake-data-');
  await mkdir(join(base, 'arr'));
  await writeFile(join(base, 'arr', 'a.npy'), npy('<f4', [2], Float32Array.from([1, 2])));
  await writeFile(join(base, 'arr', 'b.npy'), npy('<f4', [2], Float32Array.from([3, 4])));
  const spec: DataSpec = { path: 'arr', kind: 'npy' };
  const d1 = await dataDigest(spec, ctx(base));
  await writeFile(join(base, 'arr', 'notes.md'), 'not read');
  assert.equal(await dataDigest(spec, ctx(base)), d1);
  await writeFile(join(base, 'arr', 'b.npy'), npy('<f4', [2], Float32Array.from([3, 5])));
  const d2 = await dataDigest(spec, ctx(base));
  assert.notEqual(d2, d1);
  assert.notEqual(await dataDigest({ ...spec, limit: 1 }, ctx(base)), d2, 'limit changes which files are read');
  assert.equal(await dataDigest(undefined, ctx(base)), undefined);
});

test('verify.data, decode and decision_threshold on a GGUF model are refused, not ignored', async () => {
  const { verifyGguf } = await import('../../src/verify/llama/index.js');
  await assert.rejects(verifyGguf('chat', '/nonexistent.gguf', '/nonexistent.gguf', { data: { path: 'x', kind: 'npy' } }), isInputError('verify.data', /applies to ONNX models/));
  await assert.rejects(verifyGguf('chat', '/nonexistent.gguf', '/nonexistent.gguf', { decision_threshold: 0.5 }), isInputError('verify.decision_threshold'));
});
