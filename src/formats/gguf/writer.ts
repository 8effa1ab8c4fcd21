// GGUF v3 writer with explicit phases: key-values, then tensor infos, then tensor data, then finish.
// Calls out of order throw, so a file can never be written half-described. Data goes to a temp file
// renamed on finish(). The header is written when the data phase opens (`openData`, or the first
// `writeTensorData`), and the file is sized then (padding reads as zeros), so tensors may be written in
// any order: by `writeTensorData` in declaration order, by `writeTensorAt`, or by anyone at the file
// offset `region(name)` gives (other threads, straight from their own memory) followed by `markWritten`.
import { open, type FileHandle } from 'node:fs/promises';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BackgroundFlusher, tempPathFor } from '../../util/fs.js';
import {
  alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, SCALAR_BYTES, VALUE_TYPE_CODES,
  type GgufArray, type GgufKv, type GgufScalar, type GgufValueType,
} from './values.js';

type Phase = 'kv' | 'tensorInfo' | 'data' | 'finished' | 'failed';

interface PendingTensor {
  name: string;
  dims: number[];
  type: number;
  byteLength: number;
  offset: number;
}

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u8(v: number): void { this.ensure(1); this.buf.writeUInt8(v, this.length); this.length += 1; }
  i8(v: number): void { this.ensure(1); this.buf.writeInt8(v, this.length); this.length += 1; }
  u16(v: number): void { this.ensure(2); this.buf.writeUInt16LE(v, this.length); this.length += 2; }
  i16(v: number): void { this.ensure(2); this.buf.writeInt16LE(v, this.length); this.length += 2; }
  u32(v: number): void { this.ensure(4); this.buf.writeUInt32LE(v, this.length); this.length += 4; }
  i32(v: number): void { this.ensure(4); this.buf.writeInt32LE(v, this.length); this.length += 4; }
  f32(v: number): void { this.ensure(4); this.buf.writeFloatLE(v, this.length); this.length += 4; }
  f64(v: number): void { this.ensure(8); this.buf.writeDoubleLE(v, this.length); this.length += 8; }
  u64(v: number | bigint): void {
    this.ensure(8);
    // Safe integers as two 32-bit halves: BigInt conversion per value dominated writing a vocabulary.
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
      this.buf.writeUInt32LE(v % 0x100000000, this.length);
      this.buf.writeUInt32LE(Math.floor(v / 0x100000000), this.length + 4);
    } else {
      this.buf.writeBigUInt64LE(BigInt(v), this.length);
    }
    this.length += 8;
  }
  i64(v: number | bigint): void { this.ensure(8); this.buf.writeBigInt64LE(BigInt(v), this.length); this.length += 8; }
  str(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.u64(n);
    this.ensure(n);
    this.buf.write(s, this.length, n, 'utf8');
    this.length += n;
  }
  zeros(n: number): void { this.ensure(n); this.buf.fill(0, this.length, this.length + n); this.length += n; }
  strings(values: string[], key: string): void {
    let bytes = 0;
    for (const s of values) {
      if (typeof s !== 'string') throw new TypeError(`GGUF key ${key}: expected a string`);
      bytes += 8 + Buffer.byteLength(s, 'utf8');
    }
    this.ensure(bytes);
    for (const s of values) {
      const at = this.length;
      const n = this.buf.write(s, at + 8, 'utf8');
      this.buf.writeUInt32LE(n, at);
      this.buf.writeUInt32LE(0, at + 4);
      this.length = at + 8 + n;
    }
  }
  f32s(values: number[]): void {
    this.ensure(4 * values.length);
    for (const v of values) this.length = this.buf.writeFloatLE(Number(v), this.length);
  }
  i32s(values: number[]): void {
    this.ensure(4 * values.length);
    for (const v of values) this.length = this.buf.writeInt32LE(v, this.length);
  }
  bytes(): Buffer { return this.buf.subarray(0, this.length); }
}

const INT_RANGES: Partial<Record<GgufValueType, [number, number]>> = {
  u8: [0, 255], i8: [-128, 127], u16: [0, 65535], i16: [-32768, 32767], u32: [0, 4294967295], i32: [-2147483648, 2147483647],
};

function checkNumber(key: string, type: GgufValueType, v: GgufScalar): void {
  const r = INT_RANGES[type];
  if (r && (typeof v !== 'number' || !Number.isInteger(v) || v < r[0] || v > r[1])) {
    throw new RangeError(`GGUF key ${key}: ${String(v)} is not a valid ${type}`);
  }
}

/** Checks a value against its declared type up front, so a bad value fails at addKv, not at write time. */
function validateValue(key: string, type: GgufValueType, v: GgufScalar | GgufArray): void {
  if (type === 'array') {
    const arr = v as GgufArray;
    if (!arr || !Array.isArray(arr.values) || !(arr.itemType in VALUE_TYPE_CODES)) throw new TypeError(`GGUF key ${key}: expected an array value`);
    for (const item of arr.values) validateValue(key, arr.itemType, item);
    return;
  }
  checkNumber(key, type, v as GgufScalar);
  if (type === 'string' && typeof v !== 'string') throw new TypeError(`GGUF key ${key}: expected a string`);
  if (type === 'bool' && typeof v !== 'boolean') throw new TypeError(`GGUF key ${key}: expected a boolean`);
  if ((type === 'f32' || type === 'f64') && typeof v !== 'number') throw new TypeError(`GGUF key ${key}: expected a number`);
  if ((type === 'u64' || type === 'i64') && typeof v !== 'number' && typeof v !== 'bigint') throw new TypeError(`GGUF key ${key}: expected an integer`);
}

function writeScalar(sink: ByteSink, key: string, type: GgufValueType, v: GgufScalar | GgufArray): void {
  if (type === 'array') {
    const arr = v as GgufArray;
    sink.u32(VALUE_TYPE_CODES[arr.itemType]);
    sink.u64(arr.values.length);
    // A vocabulary is tens of thousands of items: the common item types get a loop of their own.
    if (arr.itemType === 'string') sink.strings(arr.values as string[], key);
    else if (arr.itemType === 'f32') sink.f32s(arr.values as number[]);
    else if (arr.itemType === 'i32') sink.i32s(arr.values as number[]);
    else for (const item of arr.values) writeScalar(sink, key, arr.itemType, item);
    return;
  }
  const s = v as GgufScalar; // checked by validateValue when added
  switch (type) {
    case 'u8': sink.u8(s as number); break;
    case 'i8': sink.i8(s as number); break;
    case 'u16': sink.u16(s as number); break;
    case 'i16': sink.i16(s as number); break;
    case 'u32': sink.u32(s as number); break;
    case 'i32': sink.i32(s as number); break;
    case 'f32': sink.f32(Number(s)); break;
    case 'f64': sink.f64(Number(s)); break;
    case 'bool': sink.u8(s ? 1 : 0); break;
    case 'u64': sink.u64(s as number | bigint); break;
    case 'i64': sink.i64(s as number | bigint); break;
    case 'string':
      if (typeof s !== 'string') throw new TypeError(`GGUF key ${key}: expected a string`);
      sink.str(s);
      break;
  }
}

export interface GgufWriterOptions {
  alignment?: number;
}

export class GgufWriter {
  private phase: Phase = 'kv';
  private readonly kvs: GgufKv[] = [];
  private readonly keys = new Set<string>();
  private readonly tensors: PendingTensor[] = [];
  private readonly tensorNames = new Set<string>();
  private dataSize = 0;
  private nextData = 0;
  private written = 0;
  /** File offset of the data section (the header's length), once the data phase is open. */
  private dataStart = 0;
  private readonly done = new Set<string>();
  private opening?: Promise<void>;
  private fh?: FileHandle;
  private flusher?: BackgroundFlusher;
  private readonly tmp: string;
  readonly alignment: number;

  private constructor(readonly path: string, opts: GgufWriterOptions) {
    this.alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(this.alignment) || this.alignment <= 0 || this.alignment % 8 !== 0) {
      throw new RangeError(`GGUF alignment must be a positive multiple of 8, got ${this.alignment}`);
    }
    this.tmp = tempPathFor(path);
    // Readers assume 32 unless the file says otherwise, so any other alignment must be written down.
    if (this.alignment !== GGUF_DEFAULT_ALIGNMENT) this.addKv({ key: 'general.alignment', type: 'u32', value: this.alignment });
  }

  static create(path: string, opts: GgufWriterOptions = {}): GgufWriter {
    return new GgufWriter(path, opts);
  }

  private expect(phases: Phase[], what: string): void {
    if (!phases.includes(this.phase)) {
      throw new Error(`GgufWriter: ${what} is not allowed in phase '${this.phase}' (order: key-values, tensor infos, tensor data, finish)`);
    }
  }

  /** Phase 1: metadata. Keys are unique; order is kept. */
  addKv(kv: GgufKv): this {
    this.expect(['kv'], `addKv(${kv.key})`);
    if (this.keys.has(kv.key)) throw new Error(`GgufWriter: duplicate key ${kv.key}`);
    if (kv.key === 'general.alignment' && (kv.type !== 'u32' || kv.value !== this.alignment)) {
      throw new Error(`GgufWriter: general.alignment must be the u32 ${this.alignment} this writer pads to (set it with GgufWriter.create(path, { alignment }))`);
    }
    validateValue(kv.key, kv.type, kv.value);
    this.keys.add(kv.key);
    this.kvs.push(kv);
    return this;
  }

  /** Phase 2: declares a tensor; its data must later arrive in declaration order, exactly byteLength bytes. */
  addTensorInfo(name: string, dims: readonly number[], type: number, byteLength: number): this {
    this.expect(['kv', 'tensorInfo'], `addTensorInfo(${name})`);
    this.phase = 'tensorInfo';
    if (this.tensorNames.has(name)) throw new Error(`GgufWriter: duplicate tensor ${name}`);
    if (dims.length < 1 || dims.length > 4) throw new RangeError(`GgufWriter: tensor ${name} has ${dims.length} dims (1..4 allowed)`);
    this.tensorNames.add(name);
    const offset = alignUp(this.dataSize, this.alignment);
    this.tensors.push({ name, dims: [...dims], type, byteLength, offset });
    this.dataSize = offset + byteLength;
    return this;
  }

  private header(): Buffer {
    const sink = new ByteSink();
    sink.u32(GGUF_MAGIC);
    sink.u32(GGUF_VERSION);
    sink.u64(this.tensors.length);
    sink.u64(this.kvs.length);
    for (const kv of this.kvs) {
      sink.str(kv.key);
      sink.u32(VALUE_TYPE_CODES[kv.type]);
      writeScalar(sink, kv.key, kv.type, kv.value);
    }
    for (const t of this.tensors) {
      sink.str(t.name);
      sink.u32(t.dims.length);
      for (const d of t.dims) sink.u64(d);
      sink.u32(t.type);
      sink.u64(t.offset);
    }
    sink.zeros(alignUp(sink.length, this.alignment) - sink.length);
    return sink.bytes();
  }

  /**
   * Phase 3 begins: writes the header and sizes the file to its final length (the padding between
   * tensors reads as zeros). Returns the temp file's path, which other writers may open to write tensor
   * data at `region(name)`.
   */
  async openData(): Promise<string> {
    this.expect(['kv', 'tensorInfo', 'data'], 'openData()');
    this.opening ??= (async () => {
      await mkdir(dirname(this.path), { recursive: true });
      this.fh = await open(this.tmp, 'w');
      this.flusher = new BackgroundFlusher(this.fh, 32 << 20);
      const head = this.header();
      await this.fh.write(head, 0, head.length, 0);
      this.dataStart = head.length;
      this.written = head.length;
      await this.fh.truncate(head.length + alignUp(this.dataSize, this.alignment));
      this.phase = 'data';
    })();
    try {
      await this.opening;
    } catch (err) {
      await this.abort();
      throw err;
    }
    return this.tmp;
  }

  /** Where tensor `name`'s data goes in the temp file (after openData). */
  region(name: string): { position: number; byteLength: number } {
    this.expect(['data'], `region(${name})`);
    const t = this.tensor(name);
    return { position: this.dataStart + t.offset, byteLength: t.byteLength };
  }

  private tensor(name: string): PendingTensor {
    const t = this.tensors.find((x) => x.name === name);
    if (!t) throw new Error(`GgufWriter: no tensor ${name} was declared`);
    return t;
  }

  /** Records that tensor `name`'s bytes were written at region(name) by another writer. */
  markWritten(name: string, bytes?: number): void {
    this.expect(['data'], `markWritten(${name})`);
    this.tensor(name);
    if (this.done.has(name)) throw new Error(`GgufWriter: tensor ${name} written twice`);
    this.done.add(name);
    this.written += bytes ?? 0;
    this.flusher!.grown(this.written); // to disk while later tensors are computed
  }

  /** Phase 3: tensor `name`'s bytes, whole, in any order. */
  async writeTensorAt(name: string, data: Uint8Array): Promise<void> {
    this.expect(['kv', 'tensorInfo', 'data'], `writeTensorAt(${name})`);
    try {
      if (this.phase !== 'data') await this.openData();
      const t = this.tensor(name);
      if (data.length !== t.byteLength) throw new Error(`GgufWriter: tensor ${name} declared ${t.byteLength} bytes, got ${data.length}`);
      if (this.done.has(name)) throw new Error(`GgufWriter: tensor ${name} written twice`);
      let done = 0;
      while (done < data.length) {
        // One call writes at most 1 GiB: Node refuses lengths past 2 GiB (an F32 70B embedding is 4.2 GB).
        const { bytesWritten } = await this.fh!.write(data, done, Math.min(data.length - done, 1 << 30), this.dataStart + t.offset + done);
        done += bytesWritten;
      }
      this.markWritten(name, data.length);
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Phase 3: the next declared tensor's bytes, whole, in declaration order. */
  async writeTensorData(name: string, data: Uint8Array): Promise<void> {
    this.expect(['kv', 'tensorInfo', 'data'], `writeTensorData(${name})`);
    const t = this.tensors[this.nextData];
    if (!t) {
      await this.abort();
      throw new Error(`GgufWriter: data for ${name} but every declared tensor is already written`);
    }
    if (t.name !== name) {
      await this.abort();
      throw new Error(`GgufWriter: expected data for ${t.name} (declaration order), got ${name}`);
    }
    await this.writeTensorAt(name, data);
    this.nextData++;
  }

  /** Ends the file: every declared tensor must have its data; the temp file is renamed onto `path`. */
  async finish(): Promise<{ path: string; bytes: number }> {
    this.expect(['kv', 'tensorInfo', 'data'], 'finish()');
    try {
      if (this.phase !== 'data') await this.openData();
      const missing = this.tensors.filter((t) => !this.done.has(t.name));
      if (missing.length > 0) {
        throw new Error(`GgufWriter: finish() with ${missing.length} tensor(s) still missing data (next: ${missing[0]!.name})`);
      }
      await this.flusher!.sync();
      await this.fh!.close();
      this.fh = undefined;
      await rename(this.tmp, this.path);
      this.phase = 'finished';
      return { path: this.path, bytes: this.dataStart + alignUp(this.dataSize, this.alignment) };
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Drops the temp file; the target is untouched. */
  async abort(): Promise<void> {
    this.phase = 'failed';
    await this.flusher?.settle();
    if (this.fh) await this.fh.close().catch(() => undefined);
    this.fh = undefined;
    await rm(this.tmp, { force: true });
  }
}

/** Size of a scalar or array value in bytes (for callers estimating header sizes). */
export function valueBytes(type: GgufValueType, value: GgufScalar | GgufArray): number {
  if (type === 'string') return 8 + Buffer.byteLength(value as string, 'utf8');
  if (type === 'array') {
    const arr = value as GgufArray;
    let n = 12;
    for (const v of arr.values) n += valueBytes(arr.itemType, v);
    return n;
  }
  return SCALAR_BYTES[type];
}
