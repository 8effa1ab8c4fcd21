// Reading and writing .onnx files, with ONNX external data (location/offset/length) for models whose
// tensors do not fit the 2 GiB protobuf limit. Reading resolves external data into memory so rewriters
// see one uniform model; writing decides again where each tensor goes.
import { open, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { InputError } from '../../util/errors.js';
import { safeJoin, withTempFile } from '../../util/fs.js';
import { allTensors, ownArrays } from './graph.js';
import { decodeModel, encodeModel, type ModelProto, type TensorProto } from './proto.js';
import { tensorByteLength } from './tensor.js';

/** protobuf messages cannot exceed 2 GiB; stay well below so the graph itself still fits. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;
const AUTO_EXTERNAL_ABOVE = PROTOBUF_LIMIT - 64 * 2 ** 20;
const EXTERNAL_DATA = 1;

function externalEntries(t: TensorProto): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of t.external_data ?? []) out[e.key] = e.value;
  return out;
}

/**
 * Reads an .onnx file and loads any external data it references (paths confined to its folder, or to
 * `externalDataDir` for a model saved elsewhere that still points at the original data files).
 */
export async function readOnnx(file: string, opts: { externalDataDir?: string } = {}): Promise<ModelProto> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    throw new InputError(`cannot read ONNX model ${file}: ${(err as Error).message}`, { file, expected: 'an existing .onnx file', cause: err });
  }
  if (size > PROTOBUF_LIMIT) {
    throw new InputError(`${file} is ${size} bytes, over the 2 GiB protobuf limit`, { file, expected: 'an .onnx file under 2 GiB (large weights belong in external data)', hint: 'save the model with external data (.onnx_data)' });
  }
  const model = decodeModel(await readFile(file), file);
  ownArrays(model);
  await loadExternalData(model, file, opts.externalDataDir ?? dirname(file));
  return model;
}

async function loadExternalData(model: ModelProto, file: string, dir: string): Promise<void> {
  const handles = new Map<string, { fh: import('node:fs/promises').FileHandle; size: number }>();
  try {
    for (const t of allTensors(model)) {
      if (t.data_location !== EXTERNAL_DATA) continue;
      const e = externalEntries(t);
      const where = `tensor ${t.name ?? '?'} in ${file}`;
      const target = e.location ? safeJoin(dir, e.location) : undefined;
      if (!target) {
        throw new InputError(`${where} points at external data "${e.location ?? ''}" outside the model's folder`, { file, field: 'external_data.location', expected: 'a relative path inside the model folder', hint: 'keep .onnx_data files next to the .onnx file' });
      }
      let h = handles.get(target);
      if (!h) {
        try {
          const fh = await open(target, 'r');
          h = { fh, size: (await fh.stat()).size };
        } catch (err) {
          throw new InputError(`${where} needs external data file ${e.location} which cannot be read: ${(err as Error).message}`, { file: target, hint: 'download the .onnx_data file(s) with the model', cause: err });
        }
        handles.set(target, h);
      }
      const offset = Number(e.offset ?? 0);
      const length = e.length !== undefined ? Number(e.length) : h.size - offset;
      const expected = tensorByteLength({ ...t, raw_data: undefined });
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > h.size || (expected && length !== expected)) {
        throw new InputError(`${where}: external data range offset=${e.offset} length=${e.length} does not fit ${e.location} (${h.size} bytes) or the tensor's ${expected} bytes`, { file: target, field: 'external_data', expected: 'offset + length within the data file, length = tensor bytes', hint: 'the .onnx and .onnx_data files do not belong together or one is truncated' });
      }
      const buf = Buffer.alloc(length);
      // One read call takes at most 2 GiB - 1 bytes: big tensors come in pieces.
      for (let done = 0; done < length;) {
        const { bytesRead } = await h.fh.read(buf, done, Math.min(CHUNK, length - done), offset + done);
        if (bytesRead <= 0) throw new InputError(`${where}: external data file ${e.location} ended early`, { file: target });
        done += bytesRead;
      }
      t.raw_data = buf;
      t.data_location = 0;
      t.external_data = [];
    }
  } finally {
    for (const { fh } of handles.values()) await fh.close();
  }
}

/**
 * The external-data files an ONNX model's tensors reference: their `location` values as written
 * (relative to the model's folder; not checked or opened here). Malformed bytes give an InputError.
 */
export function externalDataLocations(bytes: Uint8Array, file = '<memory>'): string[] {
  const model = decodeModel(bytes, file);
  const out = new Set<string>();
  for (const t of allTensors(model)) {
    if (t.data_location !== EXTERNAL_DATA) continue;
    const location = externalEntries(t).location;
    if (location) out.add(location);
  }
  return [...out].sort();
}

export interface WriteOnnxOptions {
  /** true: tensors of sizeThreshold bytes or more go to the data file; 'auto' (default): only when the model would pass 2 GiB. */
  externalData?: boolean | 'auto';
  /** Data file name, beside the model; default `<model file name>_data` (transformers.js's `model.onnx_data`). */
  location?: string;
  /** Smallest tensor moved to external data, in bytes (onnx's default 1024). */
  sizeThreshold?: number;
}

/** Total tensor bytes: decides whether external data is needed. */
export function modelTensorBytes(model: ModelProto): number {
  let total = 0;
  for (const t of allTensors(model)) total += tensorByteLength(t);
  return total;
}

const ALIGN = 64;

/** Writes `model` to `file` atomically, moving large tensors to external data when asked or needed. */
export async function writeOnnx(model: ModelProto, file: string, opts: WriteOnnxOptions = {}): Promise<{ files: string[] }> {
  const mode = opts.externalData ?? 'auto';
  const external = mode === true || (mode === 'auto' && modelTensorBytes(model) > AUTO_EXTERNAL_ABOVE);
  if (!external) {
    const bytes = encodeModel(model);
    await withTempFile(file, async (tmp) => writeAll(tmp, [bytes]), bytes.length);
    return { files: [file] };
  }
  const location = opts.location ?? `${basename(file)}_data`;
  const dataFile = safeJoin(dirname(file), location);
  if (!dataFile) throw new InputError(`external data location ${location} is not a plain file name`, { field: 'location', expected: 'a file name inside the model folder' });
  const threshold = opts.sizeThreshold ?? 1024;
  const moved = allTensors(model).filter((t) => t.raw_data && t.raw_data.length >= threshold);
  // Swap raw bytes for external references while encoding, then put them back: the caller's model stays intact.
  const saved = moved.map((t) => ({ t, raw: t.raw_data!, loc: t.data_location, ext: t.external_data }));
  try {
    await withTempFile(dataFile, async (tmp) => {
      const fh = await open(tmp, 'w');
      try {
        let offset = 0;
        for (const s of saved) {
          const pad = (ALIGN - (offset % ALIGN)) % ALIGN;
          if (pad) { await fh.write(Buffer.alloc(pad)); offset += pad; }
          await writeChunked(fh, s.raw);
          s.t.external_data = [
            { key: 'location', value: location },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(s.raw.length) },
          ];
          s.t.data_location = EXTERNAL_DATA;
          s.t.raw_data = undefined;
          offset += s.raw.length;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
    });
    const bytes = encodeModel(model);
    await withTempFile(file, async (tmp) => writeAll(tmp, [bytes]), bytes.length);
  } catch (err) {
    await rm(dataFile, { force: true });
    throw err;
  } finally {
    for (const s of saved) { s.t.raw_data = s.raw; s.t.data_location = s.loc; s.t.external_data = s.ext; }
  }
  return { files: [file, dataFile] };
}

const CHUNK = 2 ** 30;

async function writeChunked(fh: import('node:fs/promises').FileHandle, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length; off += CHUNK) await fh.write(data.subarray(off, Math.min(data.length, off + CHUNK)));
}

async function writeAll(path: string, chunks: Uint8Array[]): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (const c of chunks) await writeChunked(fh, c);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Bytes on disk of an .onnx file plus the external data files it references. */
export async function onnxDiskSize(file: string): Promise<number> {
  const model = decodeModel(await readFile(file), file);
  let total = (await stat(file)).size;
  const seen = new Set<string>();
  for (const t of allTensors(model)) {
    if (t.data_location !== EXTERNAL_DATA) continue;
    const loc = externalEntries(t).location;
    const p = loc ? safeJoin(dirname(file), loc) : undefined;
    if (p && !seen.has(p)) { seen.add(p); total += (await stat(p)).size; }
  }
  return total;
}
