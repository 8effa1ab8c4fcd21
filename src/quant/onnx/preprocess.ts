// Pre-processing before quantization, as onnxruntime's quant_pre_process recommends: let onnxruntime
// itself apply its basic (ONNX-standard) graph optimizations, chiefly constant folding, and save the
// result. Exporters often compute weights at run time (PyTorch's LSTM export concatenates and unsqueezes
// constants into W and R); after folding they are plain initializers a quantizer can rewrite.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { readOnnx, type ModelProto } from '../../formats/onnx/index.js';
import { InputError } from '../../util/errors.js';

export async function foldConstants(file: string): Promise<ModelProto> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-preprocess-'));
  try {
    const out = join(dir, 'folded.onnx');
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, { graphOptimizationLevel: 'basic', optimizedModelFilePath: out, logSeverityLevel: 3, intraOpNumThreads: 1 });
    } catch (err) {
      throw new InputError(`onnxruntime cannot load ${file}: ${(err as Error).message}`, {
        file, expected: 'a model onnxruntime-node can load', hint: 'check the model opens in onnxruntime, or set quantize.preprocess: false', cause: err,
      });
    }
    await session.release();
    // onnxruntime keeps external data where it was: references resolve beside the source model.
    return await readOnnx(out, { externalDataDir: dirname(file) });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
