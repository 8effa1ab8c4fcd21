// GGUF entry points for the pipeline: convert a Hugging Face checkpoint to a GGUF of a given type, or
// requantize an F32/F16/BF16 GGUF. Both write what llama-quantize would write for the same F32 input:
// the same tensor order, per-tensor types, metadata order and bytes.
import { hfModelSource } from '../../convert/hf-to-gguf.js';
import type { ModelSource } from '../../convert/source.js';
import { GgufWriter, type GgufKv } from '../../formats/gguf/index.js';
import { InputError } from '../../util/errors.js';
import { ggufModelSource } from './gguf-source.js';
import { explainTensorTypes, FILE_TYPE_NAMES, fileTypeByName, sortTensorsLikeLlamaCpp } from './mix.js';
import { QuantizePool, SharedBufferRing } from './pool.js';
import { ggmlTypeByName, tensorBytes } from './types.js';

export { FILE_TYPE_NAMES, fileTypeByName, chooseTensorTypes, sortTensorsLikeLlamaCpp } from './mix.js';
export { GGML_TYPES, ggmlTypeById, ggmlTypeByName, rowBytes, tensorBytes, type GgmlType } from './types.js';

/** Accepted recipe `type` values. */
export const GGUF_TYPES: readonly string[] = FILE_TYPE_NAMES;

/** GGML_QNT_VERSION, written as general.quantization_version. */
const QUANTIZATION_VERSION = 2;

export interface GgufEvent {
  type: string;
  message: string;
}

export interface GgufWriteOptions {
  type: string;
  threads?: number;
  onEvent?: (e: GgufEvent) => void;
}

export interface GgufWriteResult {
  outFile: string;
  tensors: number;
  bytes: number;
  /** Tensor type name -> count of tensors stored in it. */
  typeCounts: Record<string, number>;
  /** Tensors not stored in the file type's default type, grouped by type and the rule that chose it. */
  kept: KeptTensors[];
}

export interface KeptTensors {
  type: string;
  reason: string;
  tensors: string[];
}

export interface ConvertOptions extends GgufWriteOptions {
  /** The recipe's model id: progress events then say "model files" rather than `srcDir` (a scratch copy). */
  modelId?: string;
  /** The model folder's name as the user knows it (general.name falls back to it); default: srcDir's. */
  folderName?: string;
}

export async function convertHfToGguf(srcDir: string, outFile: string, opts: ConvertOptions): Promise<GgufWriteResult> {
  checkType(opts.type);
  // Errors name the files under srcDir; the pipeline's step runner maps its scratch copy back to the
  // model id and the user's files (src/pipeline/step.ts), as for every other reader.
  const source = await hfModelSource(srcDir, { folderName: opts.folderName });
  opts.onEvent?.({ type: 'source', message: `${opts.modelId ? 'model files' : srcDir}: ${source.arch}, ${source.tensors.length} tensors` });
  return writeModel(source, outFile, opts);
}

export async function requantizeGguf(inFile: string, outFile: string, opts: GgufWriteOptions): Promise<GgufWriteResult> {
  checkType(opts.type);
  const source = await ggufModelSource(inFile);
  opts.onEvent?.({ type: 'source', message: `${inFile}: ${source.arch}, ${source.tensors.length} tensors` });
  return writeModel(source, outFile, opts);
}

function checkType(type: string): void {
  if (!fileTypeByName(type)) {
    throw new InputError(`unknown GGUF type ${JSON.stringify(type)}`, { field: 'quantize.type', expected: `one of ${GGUF_TYPES.join(', ')}` });
  }
}

/** Keys llama-quantize drops from the input and then sets at the end (in this order). */
const REWRITTEN_KEYS = new Set(['general.quantization_version', 'general.file_type', 'split.no', 'split.count', 'split.tensors.count']);

/** Quantizes and writes a model source with llama-quantize's rules for `opts.type`. */
export async function writeModel(source: ModelSource, outFile: string, opts: GgufWriteOptions): Promise<GgufWriteResult> {
  const fileType = fileTypeByName(opts.type)!;
  const threads = Math.max(1, Math.floor(opts.threads ?? 1));
  const tensors = sortTensorsLikeLlamaCpp(source.tensors);
  const choices = explainTensorTypes(tensors, fileType, source);
  const targets = choices.map((c) => c.type);
  const kept = new Map<string, KeptTensors>();
  choices.forEach((c, i) => {
    if (!c.reason) return;
    const k = `${c.type}\0${c.reason}`;
    if (!kept.has(k)) kept.set(k, { type: c.type, reason: c.reason, tensors: [] });
    kept.get(k)!.tensors.push(tensors[i]!.name);
  });

  const writer = GgufWriter.create(outFile);
  const kvs: GgufKv[] = [
    ...source.kvs.filter((kv) => !REWRITTEN_KEYS.has(kv.key)),
    { key: 'general.quantization_version', type: 'u32', value: QUANTIZATION_VERSION },
    { key: 'general.file_type', type: 'u32', value: fileType.ftype },
  ];
  for (const kv of kvs) writer.addKv(kv);
  const typeCounts: Record<string, number> = {};
  tensors.forEach((t, i) => {
    const type = ggmlTypeByName(targets[i]!)!;
    const size = tensorBytes(type, t.ne);
    if (size === undefined) throw new Error(`internal: ${t.name} [${t.ne.join(', ')}] does not fit ${type.name}`);
    writer.addTensorInfo(t.name, t.ne, type.id, size);
    typeCounts[type.name] = (typeCounts[type.name] ?? 0) + 1;
  });

  const pool = new QuantizePool(threads);
  if (tensors.some((t, i) => targets[i] !== t.typeName && pool.usesWorkers(t.ne.reduce((a, b) => a * b, 1)))) pool.start();
  // A pipeline of three: reading tensor i+1 and writing tensor i-1 overlap quantizing tensor i. Inputs
  // pass through three buffers (the one read, the one quantized, and a copied-through one being
  // written), outputs through two (the one filled, the one written).
  const inputs = new SharedBufferRing(3);
  const outputs = new SharedBufferRing(2);
  const read = (i: number): Promise<Uint8Array | Float32Array> | undefined => {
    const t = tensors[i];
    if (!t) return undefined;
    const values = t.ne.reduce((a, b) => a * b, 1);
    const raw = targets[i] === t.typeName;
    const into = inputs.next(raw ? tensorBytes(ggmlTypeByName(t.typeName)!, t.ne)! : values * 4);
    const p = raw ? t.readRaw(into) : t.readF32(new Float32Array(into.buffer, 0, values));
    p.catch(() => undefined); // surfaced when awaited; avoids an unhandled rejection meanwhile
    return p;
  };
  let writing: Promise<void> = Promise.resolve();
  try {
    let next = read(0);
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      const target = targets[i]!;
      const data = await next!;
      next = read(i + 1);
      const bytes = data instanceof Float32Array
        ? await pool.quantize(target, data, t.ne[0]!, outputs.next(tensorBytes(ggmlTypeByName(target)!, t.ne)!))
        : data;
      await writing;
      writing = writer.writeTensorData(t.name, bytes).then(() => {
        opts.onEvent?.({ type: 'tensor', message: `[${i + 1}/${tensors.length}] ${t.name} [${t.ne.join(', ')}] ${t.typeName} -> ${target}` });
      });
      writing.catch(() => undefined); // surfaced when awaited
    }
    await writing;
    const { bytes } = await writer.finish();
    opts.onEvent?.({ type: 'done', message: `${outFile}: ${bytes} bytes` });
    return { outFile, tensors: tensors.length, bytes, typeCounts, kept: [...kept.values()] };
  } catch (err) {
    await writing.catch(() => undefined); // let a write in flight settle before the file is removed
    await writer.abort();
    throw err;
  } finally {
    await pool.close();
  }
}
