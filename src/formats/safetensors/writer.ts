// safetensors writer with explicit phases: every tensor is declared first (name, dtype, shape), which
// fixes the header; then the data is written in the header's order, one tensor at a time (a tensor may
// come from a function, so a large checkpoint never sits in memory whole). Bytes are deterministic:
// tensors sorted by name, `__metadata__` first, the header JSON padded with spaces to a multiple of 8
// (the reference implementation's alignment), no other whitespace. The header is checked as strictly as
// the reader checks one: unique non-empty names, known dtypes, integer shapes, data matching the shape.
import { open, type FileHandle } from 'node:fs/promises';
import { withTempFile } from '../../util/fs.js';
import { SAFETENSORS_DTYPE_BYTES } from './reader.js';

export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_BYTES;

/** Bytes of a tensor, or a function producing them when the writer reaches it. */
export type TensorBytes = Uint8Array | (() => Promise<Uint8Array> | Uint8Array);

export interface TensorToWrite {
  name: string;
  dtype: string;
  shape: readonly number[];
  data: TensorBytes;
}

/** A programming error in what the caller asked to write (not bad user input). */
export class SafetensorsWriteError extends Error {}

function elementCount(name: string, shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new SafetensorsWriteError(`tensor ${name}: shape [${shape.join(', ')}] is not a list of non-negative integers`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new SafetensorsWriteError(`tensor ${name}: element count overflows`);
  }
  return n;
}

export interface SafetensorsLayout {
  /** The 8-byte length prefix plus the padded header JSON. */
  head: Buffer;
  /** Tensors in file order with their byte lengths. */
  tensors: { name: string; length: number; data: TensorBytes }[];
  /** Total file size. */
  size: number;
}

/** Phase 1: checks every declaration and lays out the header (no tensor data is read). */
export function layoutSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): SafetensorsLayout {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw new SafetensorsWriteError(`__metadata__.${k} is not a string`);
    header.__metadata__ = Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : 1)));
  }
  let offset = 0;
  const laid: SafetensorsLayout['tensors'] = [];
  for (const t of sorted) {
    if (!t.name || t.name === '__metadata__') throw new SafetensorsWriteError(`invalid tensor name ${JSON.stringify(t.name)}`);
    if (t.name in header) throw new SafetensorsWriteError(`tensor ${t.name} is declared twice`);
    const width = SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (width === undefined) throw new SafetensorsWriteError(`tensor ${t.name}: unknown dtype ${t.dtype}`);
    const length = elementCount(t.name, t.shape) * width;
    if (t.data instanceof Uint8Array && t.data.length !== length) {
      throw new SafetensorsWriteError(`tensor ${t.name}: ${t.data.length} bytes given, shape [${t.shape.join(', ')}] of ${t.dtype} needs ${length}`);
    }
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + length] };
    laid.push({ name: t.name, length, data: t.data });
    offset += length;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const jsonBytes = Buffer.from(json, 'utf8');
  const head = Buffer.alloc(8 + jsonBytes.length);
  head.writeBigUInt64LE(BigInt(jsonBytes.length), 0);
  jsonBytes.copy(head, 8);
  return { head, tensors: laid, size: head.length + offset };
}

async function writeAllBytes(fh: FileHandle, data: Uint8Array): Promise<void> {
  const CHUNK = 1 << 30;
  for (let at = 0; at < data.length; at += CHUNK) {
    const part = data.subarray(at, Math.min(data.length, at + CHUNK));
    let done = 0;
    while (done < part.length) done += (await fh.write(part, done, part.length - done)).bytesWritten;
  }
}

/**
 * Writes a safetensors file atomically (temp file + rename). Phase 1 lays out the header from the
 * declarations; phase 2 writes each tensor's bytes in header order, checking each length again.
 */
export async function writeSafetensors(path: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Promise<{ size: number }> {
  const layout = layoutSafetensors(tensors, metadata);
  await withTempFile(path, async (tmp) => {
    const fh = await open(tmp, 'w');
    try {
      await writeAllBytes(fh, layout.head);
      for (const t of layout.tensors) {
        const bytes = typeof t.data === 'function' ? await t.data() : t.data;
        if (bytes.length !== t.length) throw new SafetensorsWriteError(`tensor ${t.name}: its data function gave ${bytes.length} bytes where the header says ${t.length}`);
        await writeAllBytes(fh, bytes);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
  }, layout.size);
  return { size: layout.size };
}

/** Little-endian bytes of a typed array (a view, no copy). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
