// safetensors reader (single files and sharded checkpoints). Headers are untrusted: the header length,
// dtypes, shapes and offsets are checked against the file before any tensor is read, tensors may not
// overlap or leave the data section, and tensor data is read one tensor at a time (never a whole file).
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../../util/errors.js';
import { safeJoin } from '../../util/fs.js';
import { FP16_TO_FP32 } from '../fp16.js';

/** A header larger than this is refused (the reference implementation uses 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export const SAFETENSORS_DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, U16: 2, U32: 4, U64: 8, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1,
};

/** The float types the converter can widen to float32. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';

export interface SafetensorsTensor {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte offset in the file and byte length. */
  offset: number;
  length: number;
  file: string;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, SafetensorsTensor>;
}

function bad(path: string, message: string, expected?: string): InputError {
  return new InputError(`${path}: invalid safetensors file: ${message}`, {
    file: path, expected, hint: 'the file is truncated or corrupt; re-download it',
  });
}

/** Reads and validates a safetensors header. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new InputError(`cannot open ${path}: ${(err as Error).message}`, { file: path, cause: err });
  }
  try {
    const size = (await fh.stat()).size;
    if (size < 8) throw bad(path, `file is ${size} bytes, too short for the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerLen = lenBuf.readBigUInt64LE(0);
    if (headerLen > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      throw bad(path, `header length ${headerLen} exceeds ${headerLen > BigInt(MAX_HEADER_BYTES) ? `the ${MAX_HEADER_BYTES}-byte limit` : `the file (${size} bytes)`}`);
    }
    const n = Number(headerLen);
    if (n < 2) throw bad(path, `header length ${n} is too short for a JSON object`);
    const headerBuf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(headerBuf, 0, n, 8);
    if (bytesRead !== n) throw bad(path, 'file ended inside the header');
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch (err) {
      throw bad(path, `header is not valid JSON (${(err as Error).message})`);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad(path, 'header is not a JSON object');
    const dataStart = 8 + n;
    const dataSize = size - dataStart;
    const tensors = new Map<string, SafetensorsTensor>();
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (entry === null || typeof entry !== 'object' || Array.isArray(entry) || Object.values(entry).some((v) => typeof v !== 'string')) {
          throw bad(path, '__metadata__ must be an object of strings');
        }
        metadata = entry as Record<string, string>;
        continue;
      }
      const where = `tensor ${JSON.stringify(name)}`;
      if (entry === null || typeof entry !== 'object') throw bad(path, `${where} is not an object`);
      const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
      if (typeof dtype !== 'string' || !(dtype in SAFETENSORS_DTYPE_BYTES)) {
        throw bad(path, `${where} has dtype ${JSON.stringify(dtype)}`, `one of ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ')}`);
      }
      if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || (d as number) < 0)) {
        throw bad(path, `${where} has shape ${JSON.stringify(shape)}`, 'an array of non-negative integers');
      }
      if (!Array.isArray(offsets) || offsets.length !== 2 || offsets.some((o) => !Number.isSafeInteger(o) || (o as number) < 0)) {
        throw bad(path, `${where} has data_offsets ${JSON.stringify(offsets)}`, '[begin, end] byte offsets');
      }
      const [begin, end] = offsets as [number, number];
      if (end < begin) throw bad(path, `${where}: data_offsets end ${end} is before begin ${begin}`);
      if (end > dataSize) throw bad(path, `${where}: data_offsets [${begin}, ${end}] run past the data section (${dataSize} bytes)`);
      let elements = 1;
      for (const d of shape as number[]) {
        elements *= d;
        if (!Number.isSafeInteger(elements)) throw bad(path, `${where}: element count overflows`);
      }
      const expectBytes = elements * SAFETENSORS_DTYPE_BYTES[dtype]!;
      if (expectBytes !== end - begin) {
        throw bad(path, `${where}: shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${expectBytes} bytes but data_offsets span ${end - begin}`);
      }
      tensors.set(name, { name, dtype, shape: shape as number[], offset: dataStart + begin, length: end - begin, file: path });
    }
    const spans = [...tensors.values()].filter((t) => t.length > 0).sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]!.offset < spans[i - 1]!.offset + spans[i - 1]!.length) {
        throw bad(path, `tensors ${spans[i - 1]!.name} and ${spans[i]!.name} overlap`);
      }
    }
    return { path, metadata, tensors };
  } finally {
    await fh.close();
  }
}

/** A checkpoint: one model.safetensors, or shards listed by model.safetensors.index.json. */
export interface Checkpoint {
  dir: string;
  /** model.safetensors.index.json, when the checkpoint is sharded. */
  index?: string;
  files: SafetensorsFile[];
  tensors: Map<string, SafetensorsTensor>;
}

export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const indexPath = join(dir, 'model.safetensors.index.json');
  const single = join(dir, 'model.safetensors');
  let shardNames: string[];
  let weightMap: Record<string, string> | undefined;
  if (await exists(indexPath)) {
    let index: unknown;
    try {
      index = JSON.parse(await readFile(indexPath, 'utf8'));
    } catch (err) {
      throw new InputError(`${indexPath}: not valid JSON (${(err as Error).message})`, { file: indexPath });
    }
    const wm = (index as { weight_map?: unknown } | null)?.weight_map;
    if (!wm || typeof wm !== 'object' || Array.isArray(wm) || Object.values(wm).some((v) => typeof v !== 'string')) {
      throw new InputError(`${indexPath}: weight_map must map tensor names to shard file names`, { file: indexPath, field: 'weight_map' });
    }
    weightMap = wm as Record<string, string>;
    shardNames = [...new Set(Object.values(weightMap))].sort();
  } else if (await exists(single)) {
    shardNames = ['model.safetensors'];
  } else {
    throw new InputError(`${dir}: no model.safetensors or model.safetensors.index.json`, {
      file: dir, expected: 'a Hugging Face checkpoint in safetensors format', hint: 'download the safetensors weights of the model (pytorch .bin checkpoints are not read)',
    });
  }
  const files: SafetensorsFile[] = [];
  const tensors = new Map<string, SafetensorsTensor>();
  for (const shard of shardNames) {
    const path = safeJoin(dir, shard);
    if (!path) throw new InputError(`${indexPath}: shard name ${JSON.stringify(shard)} escapes the model folder`, { file: indexPath, field: 'weight_map' });
    const file = await readSafetensorsHeader(path);
    files.push(file);
    for (const [name, t] of file.tensors) {
      if (weightMap && weightMap[name] !== shard) continue;
      if (tensors.has(name)) throw new InputError(`${path}: tensor ${name} is also in ${tensors.get(name)!.file}`, { file: path, field: name });
      tensors.set(name, t);
    }
  }
  if (weightMap) {
    for (const [name, shard] of Object.entries(weightMap)) {
      if (!tensors.has(name)) throw new InputError(`${indexPath}: ${name} is mapped to ${shard} but that shard does not contain it`, { file: indexPath, field: `weight_map.${name}` });
    }
  }
  return { dir, index: weightMap ? indexPath : undefined, files, tensors };
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Reads one tensor's raw bytes. */
export async function readTensorRaw(t: SafetensorsTensor): Promise<Uint8Array> {
  const fh = await open(t.file, 'r');
  try {
    const buf = bigBuffer(t.length); // fully overwritten by the read: no zero-fill
    let got = 0;
    while (got < t.length) {
      const { bytesRead } = await fh.read(buf, got, t.length - got, t.offset + got);
      if (bytesRead === 0) throw new InputError(`${t.file}: file ended inside tensor ${t.name}`, { file: t.file, field: t.name });
      got += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

/** Reads one F32/F16/BF16 tensor widened to float32 (exact). */
export async function readTensorF32(t: SafetensorsTensor): Promise<Float32Array> {
  const raw = await readTensorRaw(t);
  const n = t.length / (SAFETENSORS_DTYPE_BYTES[t.dtype] ?? 1);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (t.dtype === 'F32') {
    // A fresh buffer is 4-aligned and the host is little-endian (x86-64, arm64): view it directly.
    return new Float32Array(raw.buffer, raw.byteOffset, n);
  }
  const out = new Float32Array(n);
  if (t.dtype === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) bits[i] = view.getUint16(i * 2, true) << 16;
  } else if (t.dtype === 'F16') {
    for (let i = 0; i < n; i++) out[i] = FP16_TO_FP32[view.getUint16(i * 2, true)]!;
  } else {
    throw new InputError(`${t.file}: tensor ${t.name} has dtype ${t.dtype}`, { file: t.file, field: t.name, expected: 'F32, F16 or BF16' });
  }
  return out;
}

/** An uninitialised byte array with its own ArrayBuffer (offset 0, so typed views are aligned). */
function bigBuffer(length: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(length);
  return new Uint8Array(b.buffer, b.byteOffset, length);
}
