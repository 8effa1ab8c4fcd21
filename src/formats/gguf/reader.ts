// GGUF v2/v3 reader. The file is untrusted: every length and count is checked against what is left of the
// file before anything is allocated, tensor offsets must be aligned and inside the data section, and
// tensor data is read on demand (never the whole file).
import { open, type FileHandle } from 'node:fs/promises';
import { InputError } from '../../util/errors.js';
import {
  alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, VALUE_TYPE_BY_CODE, SCALAR_BYTES,
  type GgufArray, type GgufKv, type GgufScalar, type GgufScalarType, type GgufTensorInfo, type GgufValueType,
} from './values.js';

/** Strings longer than this are refused (a real key or token is far shorter). */
const MAX_STRING_BYTES = 64 * 1024 * 1024;
const MAX_DIMS = 4;
/** Tensor data is read in pieces of this size, this many at once. */
const READ_PIECE = 4 << 20;
const READ_LANES = 4;

export interface GgufFile {
  path: string;
  version: number;
  alignment: number;
  kvs: GgufKv[];
  tensors: GgufTensorInfo[];
  /** Absolute file offset of the data section. */
  dataOffset: number;
  fileSize: number;
}

export interface ReadGgufOptions {
  /** Byte size of a tensor of ggml type `type` with dims `ne`; lets the reader check that data fits the file.
   *  Return undefined for an unknown type or a shape that does not fit its blocks (the reader then refuses it). */
  tensorBytes?: (type: number, ne: readonly number[]) => number | undefined;
}

class Cursor {
  private buf: Buffer = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  constructor(private readonly fh: FileHandle, readonly fileSize: number, private readonly path: string) {}

  bad(message: string, expected?: string): InputError {
    return new InputError(`${this.path}: malformed GGUF at byte ${this.pos}: ${message}`, {
      file: this.path, expected, hint: 'the file is truncated or not a GGUF model; re-download or re-convert it',
    });
  }

  async need(n: number): Promise<void> {
    if (n < 0 || this.pos + n > this.fileSize) throw this.bad(`needs ${n} more bytes but the file ends at ${this.fileSize}`);
    if (this.pos >= this.bufStart && this.pos + n <= this.bufStart + this.buf.length) return;
    const size = Math.min(Math.max(n, 1 << 20), this.fileSize - this.pos);
    const buf = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await this.fh.read(buf, got, size - got, this.pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < n) throw this.bad('unexpected end of file');
    this.buf = buf;
    this.bufStart = this.pos;
  }

  private at(): number { return this.pos - this.bufStart; }

  private buffered(n: number): boolean {
    return this.pos >= this.bufStart && this.pos + n <= this.bufStart + this.buf.length;
  }

  /** A fixed-size value decoded from the buffer; the caller has made `SCALAR_BYTES[type]` available. */
  scalarNow(type: Exclude<GgufScalarType, 'string'>, what: string): GgufScalar {
    const at = this.at();
    const b = this.buf;
    this.pos += SCALAR_BYTES[type];
    switch (type) {
      case 'u8': return b.readUInt8(at);
      case 'i8': return b.readInt8(at);
      case 'u16': return b.readUInt16LE(at);
      case 'i16': return b.readInt16LE(at);
      case 'u32': return b.readUInt32LE(at);
      case 'i32': return b.readInt32LE(at);
      case 'f32': return b.readFloatLE(at);
      case 'f64': return b.readDoubleLE(at);
      case 'bool': {
        const v = b.readUInt8(at);
        if (v > 1) { this.pos -= 1; throw this.bad(`${what}: bool byte ${v} is neither 0 nor 1`); }
        return v === 1;
      }
      case 'u64': { const v = b.readBigUInt64LE(at); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
      case 'i64': {
        const v = b.readBigInt64LE(at);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
    }
  }

  async scalar(type: Exclude<GgufScalarType, 'string'>, what: string): Promise<GgufScalar> {
    await this.need(SCALAR_BYTES[type]);
    return this.scalarNow(type, what);
  }

  async u32(): Promise<number> { return (await this.scalar('u32', 'u32')) as number; }
  async u64big(): Promise<bigint> { await this.need(8); const v = this.buf.readBigUInt64LE(this.at()); this.pos += 8; return v; }

  /**
   * A string that lies wholly in the buffer, decoded without waiting; undefined otherwise (and for any
   * length the checked path must judge), so the caller falls back to str().
   */
  strNow(): string | undefined {
    if (!this.buffered(8)) return undefined;
    const at = this.at();
    const len = this.buf.readUInt32LE(at);
    if (this.buf.readUInt32LE(at + 4) !== 0 || len > MAX_STRING_BYTES || !this.buffered(8 + len)) return undefined;
    this.pos += 8 + len;
    return this.buf.toString('utf8', at + 8, at + 8 + len);
  }

  /** A u64 that must be a safe integer no larger than `max`. */
  async count(what: string, max: number): Promise<number> {
    const v = await this.u64big();
    if (v > BigInt(max)) throw this.bad(`${what} is ${v}, more than the ${max} the rest of the file can hold`);
    return Number(v);
  }
  async str(what: string): Promise<string> {
    const len = await this.count(`${what} length`, Math.min(MAX_STRING_BYTES, this.fileSize - this.pos - 8));
    await this.need(len);
    const s = this.buf.toString('utf8', this.at(), this.at() + len);
    this.pos += len;
    return s;
  }
  remaining(): number { return this.fileSize - this.pos; }
}

async function readValue(c: Cursor, type: GgufValueType, what: string, depth: number): Promise<GgufScalar | GgufArray> {
  if (type === 'string') return c.str(what);
  if (type !== 'array') return c.scalar(type, what);
  if (depth > 8) throw c.bad(`${what}: arrays nested more than 8 deep`);
  const code = await c.u32();
  const itemType = VALUE_TYPE_BY_CODE[code];
  if (!itemType) throw c.bad(`${what}: unknown array element type ${code}`, 'a GGUF value type code 0..12');
  const minItem = itemType === 'string' || itemType === 'array' ? 8 : SCALAR_BYTES[itemType];
  const n = await c.count(`${what} element count`, Math.floor(c.remaining() / minItem));
  const values: (GgufScalar | GgufArray)[] = new Array(n);
  // Vocabularies hold 100k+ entries: decode from the buffer without a wait per item where possible.
  if (itemType === 'string') {
    for (let i = 0; i < n; i++) values[i] = c.strNow() ?? (await c.str(what));
  } else if (itemType === 'array') {
    for (let i = 0; i < n; i++) values[i] = await readValue(c, itemType, what, depth + 1);
  } else {
    await c.need(n * minItem); // n was checked against what is left of the file
    for (let i = 0; i < n; i++) values[i] = c.scalarNow(itemType, what);
  }
  return { itemType, values };
}

/** Reads the header, metadata and tensor infos of a GGUF file (not the tensor data). */
export async function readGguf(path: string, opts: ReadGgufOptions = {}): Promise<GgufFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new InputError(`cannot open GGUF file ${path}: ${(err as Error).message}`, { file: path, cause: err });
  }
  try {
    const fileSize = (await fh.stat()).size;
    const c = new Cursor(fh, fileSize, path);
    const magic = await c.u32();
    if (magic !== GGUF_MAGIC) throw c.bad('bad magic (not a GGUF file)', 'the bytes "GGUF" at offset 0');
    const version = await c.u32();
    if (version !== 2 && version !== 3) throw c.bad(`unsupported GGUF version ${version}`, 'version 2 or 3');
    // Each tensor info takes at least 8+4+8+4+8 bytes and each KV at least 8+4+1.
    const nTensors = await c.count('tensor count', Math.floor(c.remaining() / 32));
    const nKv = await c.count('key-value count', Math.floor(c.remaining() / 13));
    const kvs: GgufKv[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < nKv; i++) {
      const key = await c.str(`key #${i}`);
      if (seen.has(key)) throw c.bad(`duplicate key ${key}`);
      seen.add(key);
      const code = await c.u32();
      const type = VALUE_TYPE_BY_CODE[code];
      if (!type) throw c.bad(`key ${key}: unknown value type ${code}`, 'a GGUF value type code 0..12');
      const value = await readValue(c, type, key, 0);
      kvs.push({ key, type, value } as GgufKv);
    }
    const alignKv = kvs.find((kv) => kv.key === 'general.alignment');
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    if (alignKv) {
      const a = alignKv.value;
      if (alignKv.type !== 'u32' || typeof a !== 'number' || a === 0 || (a & (a - 1)) !== 0) {
        throw c.bad(`general.alignment must be a non-zero power of two u32, got ${String(a)}`);
      }
      alignment = a;
    }
    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = await c.str(`tensor #${i} name`);
      if (names.has(name)) throw c.bad(`duplicate tensor name ${name}`);
      names.add(name);
      const nDims = await c.u32();
      if (nDims < 1 || nDims > MAX_DIMS) throw c.bad(`tensor ${name}: ${nDims} dims`, `1..${MAX_DIMS} dims`);
      const dims: number[] = [];
      let elements = 1;
      for (let d = 0; d < nDims; d++) {
        const ne = await c.count(`tensor ${name} dim ${d}`, Number.MAX_SAFE_INTEGER);
        elements *= ne;
        if (!Number.isSafeInteger(elements)) throw c.bad(`tensor ${name}: element count overflows`);
        dims.push(ne);
      }
      const type = await c.u32();
      const offset = await c.count(`tensor ${name} offset`, fileSize);
      if (offset % alignment !== 0) throw c.bad(`tensor ${name}: offset ${offset} is not a multiple of the alignment ${alignment}`);
      tensors.push({ name, dims, type, offset });
    }
    const dataOffset = alignUp(c.pos, alignment);
    if (nTensors > 0 && dataOffset > fileSize) throw c.bad(`data section starts at ${dataOffset}, past the end of the file (${fileSize})`);
    if (opts.tensorBytes) {
      const spans: [number, number, string][] = [];
      for (const t of tensors) {
        const size = opts.tensorBytes(t.type, t.dims);
        if (size === undefined) {
          throw new InputError(`${path}: tensor ${t.name} has ggml type ${t.type} with dims [${t.dims.join(', ')}], which this reader cannot size`, {
            file: path, field: t.name, expected: 'a supported ggml type whose block size divides ne[0]',
          });
        }
        if (dataOffset + t.offset + size > fileSize) {
          throw new InputError(`${path}: tensor ${t.name} (${size} bytes at data offset ${t.offset}) runs past the end of the file (${fileSize} bytes)`, {
            file: path, field: t.name, hint: 'the file is truncated; re-download or re-convert it',
          });
        }
        spans.push([t.offset, t.offset + size, t.name]);
      }
      spans.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < spans.length; i++) {
        if (spans[i]![0] < spans[i - 1]![1]) {
          throw new InputError(`${path}: tensors ${spans[i - 1]![2]} and ${spans[i]![2]} overlap in the data section`, { file: path });
        }
      }
    }
    return { path, version, alignment, kvs, tensors, dataOffset, fileSize };
  } finally {
    await fh.close();
  }
}

/** Reads `length` bytes of a tensor's data (the caller sizes it with the type table). */
/** Reads a tensor's stored bytes into `into` (exactly `length` bytes) or a new buffer. */
export async function readTensorBytes(file: GgufFile, tensor: GgufTensorInfo, length: number, fh?: FileHandle, into?: Uint8Array): Promise<Uint8Array> {
  const start = file.dataOffset + tensor.offset;
  if (start + length > file.fileSize) {
    throw new InputError(`${file.path}: tensor ${tensor.name} runs past the end of the file`, { file: file.path, field: tensor.name });
  }
  const own = fh === undefined;
  const handle = fh ?? (await open(file.path, 'r'));
  try {
    // Every byte is overwritten by the read: skip zero-filling. Large allocations get their own
    // ArrayBuffer at offset 0, so callers can view them as Float32Array.
    if (into && into.length !== length) throw new RangeError(`readTensorBytes: ${tensor.name} needs ${length} bytes, got a buffer of ${into.length}`);
    const buf = into ?? bigBuffer(length);
    // Pieces read in parallel: a read from the page cache is a copy, and one copy uses one core.
    const pieces: Promise<void>[] = [];
    for (let lane = 0; lane < READ_LANES; lane++) {
      pieces.push((async () => {
        for (let at = lane * READ_PIECE; at < length; at += READ_LANES * READ_PIECE) {
          const end = Math.min(length, at + READ_PIECE);
          for (let got = at; got < end;) {
            const { bytesRead } = await handle.read(buf, got, end - got, start + got);
            if (bytesRead === 0) throw new InputError(`${file.path}: unexpected end of file in tensor ${tensor.name}`, { file: file.path });
            got += bytesRead;
          }
        }
      })());
    }
    await Promise.all(pieces);
    return buf;
  } finally {
    if (own) await handle.close();
  }
}

/** The value of a scalar key, or undefined. */
export function kvValue(file: GgufFile, key: string): GgufScalar | GgufArray | undefined {
  return file.kvs.find((kv) => kv.key === key)?.value;
}

/** An uninitialised byte array with its own ArrayBuffer (offset 0, so typed views are aligned). */
function bigBuffer(length: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(length);
  return new Uint8Array(b.buffer, b.byteOffset, length);
}
