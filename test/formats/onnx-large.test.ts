// A model over 2 GiB: its weights cannot live inside the protobuf, so writing moves them to external data
// (`model.onnx_data`) by itself; onnxruntime loads the pair; the quantized model (a quarter of the size) fits inline.
import assert from 'node:assert/strict';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { DataType, makeNode, makeTensor, onnxDiskSize, opCounts, PROTOBUF_LIMIT, readOnnx, writeOnnx, type ModelProto } from '../../src/formats/onnx/index.js';
import { quantizeOnnxModel } from '../../src/quant/onnx/index.js';
import { cosine } from '../../src/verify/onnx/index.js';
import { tempDir } from '../support/onnx-models.js';

const K = 16384, N = 32800; // 537,395,200 float32 weights = 2,149,580,800 bytes > 2 GiB

test('a 2.15 GB model is written with external data, loads in onnxruntime, and quantizes', { timeout: 110_000 }, async () => {
  const dir = await tempDir('bake-onnx-large-');
  try {
    const file = join(dir, 'model.onnx');
    {
      // 1M pseudo-random values tiled over the whole tensor (copyWithin doubles at memcpy speed).
      const w = new Float32Array(K * N);
      let s = 12345;
      const seed = 1 << 20;
      for (let i = 0; i < seed; i++) { s = (Math.imul(s, 1103515245) + 12345) | 0; w[i] = ((s >>> 16) & 0x7fff) / 32768 - 0.5; }
      for (let filled = seed; filled < w.length; filled *= 2) w.copyWithin(filled, 0, Math.min(filled, w.length - filled));
      const vi = (name: string, d: number[]) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: d.map((x) => ({ dim_value: x })) } } } });
      const model: ModelProto = {
        ir_version: 8, opset_import: [{ domain: '', version: 17 }],
        graph: { name: 'big', node: [makeNode('MatMul', ['x', 'W'], ['y'], 'mm')], initializer: [makeTensor('W', [K, N], w)], input: [vi('x', [1, K])], output: [vi('y', [1, N])], value_info: [] },
      };
      const { files } = await writeOnnx(model, file); // 'auto': over the limit -> external data
      assert.deepEqual(files, [file, join(dir, 'model.onnx_data')]);
    }
    assert.ok((await stat(file)).size < 10_000);
    assert.ok((await stat(join(dir, 'model.onnx_data'))).size > PROTOBUF_LIMIT);
    const x = new Float32Array(K).map((_, i) => Math.sin(i));
    const feeds = { x: new ort.Tensor('float32', x, [1, K]) };
    const s0 = await ort.InferenceSession.create(file, { logSeverityLevel: 3 });
    const y0 = (await s0.run(feeds)).y!.data as Float32Array;
    await s0.release();

    const out = join(dir, 'out');
    const r = await quantizeOnnxModel(dir, out, { format: 'onnx-int8' });
    assert.equal((r.params['model.onnx'] as { preprocess: boolean }).preprocess, false, 'too big to fold through one protobuf');
    const qfile = join(out, 'onnx/model_quantized.onnx');
    assert.deepEqual(r.outputs, ['onnx/model_quantized.onnx'], 'a quarter of 2 GiB fits inline');
    assert.equal(opCounts(await readOnnx(qfile)).MatMulInteger, 1);
    const ratio = (await onnxDiskSize(qfile)) / (await onnxDiskSize(file));
    assert.ok(ratio > 0.24 && ratio < 0.26, `size ratio ${ratio}`);
    const s1 = await ort.InferenceSession.create(qfile, { logSeverityLevel: 3 });
    const y1 = (await s1.run(feeds)).y!.data as Float32Array;
    await s1.release();
    assert.ok(cosine(y0, y1) > 0.99, `cosine ${cosine(y0, y1)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
