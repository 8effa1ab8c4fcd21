// GGUF entry points for the pipeline: convert a Hugging Face checkpoint to a GGUF of a given type, or
// requantize an F32/F16/BF16 GGUF. Both write what llama-quantize would write for the same F32 input:
// the same tensor order, per-tensor types, metadata order and bytes.
import { availableParallelism } from 'node:os';
import { hfModelSource } from '../../convert/hf-to-gguf.js';
import type { ModelSource } from '../../convert/source.js';
import { GgufWriter, type GgufKv } from '../../formats/gguf/index.js';
import { InputError } from '../../util/errors.js';
import { DIRECT_SOURCES, type FileJob } from './file-job.js';
import { ggufModelSource, isStored } from './gguf-source.js';
import { explainTensorTypes, FILE_TYPE_NAMES, fileTypeByName, sortTensorsLikeLlamaCpp } from './mix.js';
import { QuantizePool, SharedBufferRing } from './pool.js';
import { ggmlTypeByName, rowBytes, tensorBytes } from './types.js';

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
  /** Worker threads (default: the cores available, as llama-quantize). */
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

/** A file job holds at least this many values (whole rows); tensors split into a few jobs per thread. */
const MIN_JOB_VALUES = 256 * 1024;

/**
 * Quantizes and writes a model source with llama-quantize's rules for `opts.type`.
 *
 * Tensors a file holds as F32, F16 or BF16 (a GGUF being requantized) never pass through JavaScript
 * memory: they are cut into jobs of whole rows that each thread (workers and this one) reads from the
 * input file into its kernel memory, quantizes there and writes to their place in the output file
 * (file-job.ts), so memory stays at a few MiB per thread whatever the model. Tensors the converter
 * computes (permuted Q/K...) are read into shared memory, quantized by the same threads
 * (pool.quantize), then written here.
 */
export async function writeModel(source: ModelSource, outFile: string, opts: GgufWriteOptions): Promise<GgufWriteResult> {
  const fileType = fileTypeByName(opts.type)!;
  const threads = Math.max(1, Math.floor(opts.threads ?? availableParallelism()));
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

  const valuesOf = (i: number) => tensors[i]!.ne.reduce((a, b) => a * b, 1);
  const direct = tensors.map((t) => isStored(t) && DIRECT_SOURCES.has(t.typeName));
  const pool = new QuantizePool(threads);
  // With one thread, or only tiny tensors, everything runs on this thread (a worker costs more than it saves).
  if (tensors.some((t, i) => (direct[i] || targets[i] !== t.typeName) && pool.usesWorkers(valuesOf(i)))) pool.start();

  // Progress in tensor order, whatever order the jobs finish in.
  const left = tensors.map(() => 0);
  let reported = 0;
  const finished = (i: number) => {
    if (--left[i]! > 0) return;
    while (reported < tensors.length && left[reported] === 0) {
      const t = tensors[reported]!;
      opts.onEvent?.({ type: 'tensor', message: `[${reported + 1}/${tensors.length}] ${t.name} [${t.ne.join(', ')}] ${t.typeName} -> ${targets[reported]}` });
      reported++;
    }
  };

  const jobs: Promise<void>[] = [];
  try {
    const outTmp = await writer.openData();
    // Stored tensors: file jobs, all handed out at once (the pool queues them); in tensor order, so the
    // output is written roughly front to back.
    for (let i = 0; i < tensors.length; i++) {
      if (!direct[i]) continue;
      const t = asStored(tensors[i]!);
      const target = ggmlTypeByName(targets[i]!)!;
      const sourceType = ggmlTypeByName(t.typeName)!;
      const { position, byteLength } = writer.region(t.name);
      const rowLength = t.ne[0]!;
      const rows = valuesOf(i) / rowLength;
      const perRow = rowBytes(target, rowLength)!;
      const rowsPerJob = Math.max(1, Math.ceil(MIN_JOB_VALUES / rowLength), Math.ceil(rows / (threads * 4)));
      const parts: FileJob[] = [];
      for (let r = 0; r < rows; r += rowsPerJob) {
        const n = Math.min(rowsPerJob, rows - r);
        parts.push({
          target: target.name,
          source: sourceType.name,
          inPath: t.stored.path,
          inPos: t.stored.offset + r * rowLength * sourceType.bytesPerBlock,
          values: n * rowLength,
          outPath: outTmp,
          outPos: position + r * perRow,
        });
      }
      left[i] = parts.length;
      let bytes = 0;
      for (const job of parts) {
        jobs.push(pool.runFile(job).then((n) => {
          bytes += n;
          if (left[i] === 1) {
            if (bytes !== byteLength) throw new Error(`internal: ${t.name}: wrote ${bytes} of ${byteLength} bytes`);
            writer.markWritten(t.name, bytes);
          }
          finished(i);
        }));
      }
      if (parts.length === 0) {
        left[i] = 1;
        writer.markWritten(t.name, 0);
        finished(i);
      }
      jobs[jobs.length - 1]?.catch(() => undefined); // awaited below
    }
    for (const j of jobs) j.catch(() => undefined);

    // Computed tensors here, as a pipeline of three: reading tensor k+1 and writing tensor k-1 overlap
    // quantizing tensor k (their workers' chunks interleave with the file jobs). Inputs pass through three
    // shared buffers (the one read, the one quantized, a copied-through one being written), outputs two.
    const computed = tensors.map((_t, i) => i).filter((i) => !direct[i]);
    for (const i of computed) left[i] = 1;
    const inputs = new SharedBufferRing(3);
    const outputs = new SharedBufferRing(2);
    const read = (k: number): Promise<Uint8Array | Float32Array> | undefined => {
      const i = computed[k];
      if (i === undefined) return undefined;
      const t = tensors[i]!;
      const raw = targets[i] === t.typeName;
      const into = inputs.next(raw ? tensorBytes(ggmlTypeByName(t.typeName)!, t.ne)! : valuesOf(i) * 4);
      const p = raw ? t.readRaw(into) : t.readF32(new Float32Array(into.buffer, 0, valuesOf(i)));
      p.catch(() => undefined); // surfaced when awaited
      return p;
    };
    let writing: Promise<void> = Promise.resolve();
    let next = read(0);
    for (let k = 0; k < computed.length; k++) {
      const i = computed[k]!;
      const t = tensors[i]!;
      const data = await next!;
      next = read(k + 1);
      const bytes = data instanceof Float32Array
        ? await pool.quantize(targets[i]!, data, t.ne[0]!, outputs.next(tensorBytes(ggmlTypeByName(targets[i]!)!, t.ne)!))
        : data;
      await writing;
      writing = writer.writeTensorAt(t.name, bytes).then(() => finished(i));
      writing.catch(() => undefined); // surfaced when awaited
      jobs.push(writing);
    }
    await Promise.all(jobs);
    const { bytes } = await writer.finish();
    opts.onEvent?.({ type: 'done', message: `${outFile}: ${bytes} bytes` });
    return { outFile, tensors: tensors.length, bytes, typeCounts, kept: [...kept.values()] };
  } catch (err) {
    await Promise.allSettled(jobs); // let writes in flight settle before the file is removed
    await writer.abort();
    throw err;
  } finally {
    await pool.close();
  }
}

function asStored(t: ModelSource['tensors'][number]) {
  if (!isStored(t)) throw new Error('internal: not a stored tensor');
  return t;
}
