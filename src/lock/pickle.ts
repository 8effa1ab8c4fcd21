// Which model files can run code when they are loaded: Python pickles and the formats that wrap them.
// One decision for Hub repos (src/lock/resolve.ts) and local folders (src/lock/local.ts), taken when a
// model is locked, from what each selected file is rather than from its name alone:
//
//   refused, by content:  a pickle (protocol 2+: 0x80 <protocol>); a ZIP archive holding a pickle
//                         (PyTorch checkpoints: <archive>/data.pkl), or one whose listing cannot be read;
//                         gzip, zlib, bz2, xz, lzma, lz4 or zstd data (joblib compresses pickles so, and
//                         bake does not look inside); a NumPy array of Python objects (.npy with dtype O)
//   refused, by name:     names pickle loaders open (.bin .pt .pth .ckpt .pkl .pickle .joblib ...): a
//                         protocol 0/1 pickle is plain bytes with no magic, so nothing proves it is not one
//   accepted anyway:      a file that an ONNX model of the same selection names as external data (its
//                         tensor bytes, whatever its name or first bytes); a file listed in allow_pickle
//
// Files are read through a FileReader: a local folder, the Hugging Face cache, or the Hub with Range
// requests, so a Hub repo is judged by its bytes without downloading whole weights.
import { posix } from 'node:path';
import { constants as zlibConstants, inflateSync } from 'node:zlib';
import PQueue from 'p-queue';
import { externalDataLocations, PROTOBUF_LIMIT } from '../formats/onnx/index.js';
import type { ModelSpec } from '../recipe/types.js';
import { InputError } from '../util/errors.js';
import { checkModelPath } from './paths.js';

export interface ModelFile {
  path: string;
  size: number;
}

/** How the check reads a model's files (paths are checked model paths). */
export interface FileReader {
  /** Up to `length` bytes of `path` from `offset` (fewer at its end). */
  read(path: string, offset: number, length: number): Promise<Uint8Array>;
  /** The whole file: an ONNX model, to see which external-data files it references. */
  readWhole(path: string): Promise<Uint8Array>;
}

export interface UnsafeFile {
  path: string;
  /** What the file is, in words: "it is a Python pickle (protocol 4)". */
  reason: string;
}

/** Bytes read from the start of every file. */
const HEAD_BYTES = 4096;
/** A ZIP's end record sits in its last 65,557 bytes (22 + a comment of at most 65,535). */
const ZIP_TAIL_BYTES = 22 + 0xffff;
/** Central directories larger than this are not read (a checkpoint with a million tensors has ~60 MB). */
const MAX_ZIP_DIRECTORY = 128 << 20;

/** Names that pickle loaders (torch.load, pickle.load, joblib.load) open. */
const PICKLE_NAMES = /\.(bin|pt|pth|ckpt|pkl|pickle|joblib|jbl|dill)$|\.(pt|pth)\.tar$/i;

export function hasPickleName(path: string): boolean {
  return PICKLE_NAMES.test(path);
}

/** What a file's bytes say it is, when that is something that can run code on load; else undefined. */
export async function sniffUnsafeContent(file: ModelFile, reader: FileReader): Promise<string | undefined> {
  if (file.size === 0) return undefined;
  const head = await reader.read(file.path, 0, Math.min(HEAD_BYTES, file.size));
  if (head.length < 2) return undefined;
  const b = head;
  if (isSafetensors(b, file.size)) return undefined;
  if (b[0] === 0x80 && b[1]! >= 2 && b[1]! <= 5) return `it is a Python pickle (protocol ${b[1]})`;
  if (startsWith(b, [0x50, 0x4b, 0x03, 0x04]) || startsWith(b, [0x50, 0x4b, 0x05, 0x06])) {
    const names = await zipEntryNames(file, reader, b);
    if (!names) return 'it is a ZIP archive whose listing bake cannot read (PyTorch checkpoints are ZIP archives holding a pickle)';
    const pickle = names.find((n) => /\.(pkl|pickle)$/i.test(n));
    return pickle ? `it is a ZIP archive holding a pickle (${pickle}), as PyTorch checkpoints are` : undefined;
  }
  const compressed = compression(b);
  if (compressed) return `it is ${compressed}-compressed data (joblib stores pickles so; bake does not look inside)`;
  if (startsWith(b, [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]) && npyHoldsObjects(b)) return 'it is a NumPy array of Python objects, which is stored as a pickle';
  return undefined;
}

/**
 * The files among `files` that can run code when loaded, with the reason for each. Files an ONNX model
 * of `files` references as external data are not among them.
 */
export async function findUnsafeFiles(files: ModelFile[], reader: FileReader, opts: { skip?: Set<string> } = {}): Promise<UnsafeFile[]> {
  // A few files at a time: over the Hub each look is a request.
  const queue = new PQueue({ concurrency: 4 });
  const verdicts = await Promise.all(
    files.map((f) =>
      queue.add(async (): Promise<UnsafeFile | undefined> => {
        if (opts.skip?.has(f.path)) return undefined;
        const content = await sniffUnsafeContent(f, reader);
        if (content) return { path: f.path, reason: content };
        if (hasPickleName(f.path)) return { path: f.path, reason: 'its name is one that pickle loaders such as torch.load open, and no ONNX model of the selection names it as external data' };
        return undefined;
      }),
    ),
  );
  const suspects = verdicts.filter((v): v is UnsafeFile => v !== undefined);
  if (suspects.length === 0) return [];
  const tensorData = await onnxExternalData(files, reader);
  return suspects.filter((s) => !tensorData.has(s.path));
}

/**
 * Refuses (InputError, exit 2) the first file of a model's selection that can run code when loaded,
 * unless allow_pickle lists it by name. `where` names the repo or folder in the message.
 */
export async function refuseUnsafeFiles(model: ModelSpec, files: ModelFile[], reader: FileReader, where: string, recipeFile?: string): Promise<void> {
  const unsafe = await findUnsafeFiles(files, reader, { skip: new Set(model.allow_pickle) });
  const first = unsafe[0];
  if (!first) return;
  throw new InputError(`model ${model.id}: ${first.path} in ${where} can run code when loaded: ${first.reason}; refused`, {
    ...(recipeFile ? { file: recipeFile } : {}),
    field: `models.${model.id}.allow_pickle`,
    expected: `${JSON.stringify(first.path)} listed in allow_pickle, or a \`files\` glob that leaves it out`,
    hint: `prefer safetensors (or ONNX) files; if you trust this source, add \`allow_pickle: [${JSON.stringify(first.path)}]\` to model ${model.id}${unsafe.length > 1 ? ` (also: ${unsafe.slice(1, 6).map((u) => u.path).join(', ')}${unsafe.length > 6 ? ', ...' : ''})` : ''}`,
  });
}

/** Model paths that the selection's ONNX models name as external data. */
async function onnxExternalData(files: ModelFile[], reader: FileReader): Promise<Set<string>> {
  const out = new Set<string>();
  for (const f of files) {
    if (!/\.onnx$/i.test(f.path) || f.size > PROTOBUF_LIMIT) continue;
    let locations: string[];
    try {
      locations = externalDataLocations(await reader.readWhole(f.path), f.path);
    } catch (err) {
      // An ONNX file that does not parse vouches for nothing (quantize reports it); read errors do stop.
      if (err instanceof InputError && err.file === f.path) continue;
      throw err;
    }
    for (const loc of locations) {
      const path = posix.normalize(posix.join(posix.dirname(f.path), loc));
      if (!checkModelPath(path)) out.add(path);
    }
  }
  return out;
}

function startsWith(b: Uint8Array, magic: number[]): boolean {
  return magic.every((m, i) => b[i] === m);
}

/** safetensors: an 8-byte little-endian header length, then the JSON header. Its length may start with 0x80. */
function isSafetensors(b: Uint8Array, size: number): boolean {
  if (b.length < 9 || b[8] !== 0x7b) return false;
  const n = Buffer.from(b.buffer, b.byteOffset, 8).readBigUInt64LE(0);
  return n >= 2n && n + 8n <= BigInt(size);
}

/** The compression a file's first bytes announce, if any. */
function compression(b: Uint8Array): string | undefined {
  if (startsWith(b, [0x1f, 0x8b, 0x08])) return 'gzip';
  if (startsWith(b, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (startsWith(b, [0x42, 0x5a, 0x68]) && b[3]! >= 0x31 && b[3]! <= 0x39 && (startsWith(b.subarray(4), [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]) || startsWith(b.subarray(4), [0x17, 0x72, 0x45, 0x38, 0x50, 0x90]))) return 'bzip2';
  if (startsWith(b, [0x04, 0x22, 0x4d, 0x18])) return 'lz4';
  if (startsWith(b, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (b.length >= 13 && b[0] === 0x5d && b[1] === 0x00 && isLzmaDictSize(Buffer.from(b.buffer, b.byteOffset, 5).readUInt32LE(1))) return 'lzma';
  // joblib < 0.10 wrote `ZF0x<hex length>` then a zlib stream.
  if (startsWith(b, [0x5a, 0x46, 0x30, 0x78])) return 'zlib';
  // zlib has only a 2-byte header (a checksum of itself): believe it only when the bytes inflate.
  if ((b[0]! & 0x0f) === 8 && b[0]! >> 4 <= 7 && ((b[0]! << 8) | b[1]!) % 31 === 0) {
    try {
      const out = inflateSync(b, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
      if (out.length > 0) return 'zlib';
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** LZMA "alone" headers carry a dictionary size of 2^n or 2^n + 2^(n-1) (what xz and Python write). */
function isLzmaDictSize(n: number): boolean {
  for (let k = 12; k <= 30; k++) if (n === 2 ** k || n === 2 ** k + 2 ** (k - 1)) return true;
  return false;
}

/** .npy: `\x93NUMPY`, version, header length, then a Python dict literal whose descr says O for objects. */
function npyHoldsObjects(b: Uint8Array): boolean {
  if (b.length < 10) return false;
  const major = b[6]!;
  const view = Buffer.from(b.buffer, b.byteOffset, b.length);
  const [len, start] = major === 1 ? [view.readUInt16LE(8), 10] : b.length >= 12 ? [view.readUInt32LE(8), 12] : [0, 0];
  const header = view.subarray(start, Math.min(b.length, start + len)).toString('latin1');
  return /['"][|<>=]?O\d*['"]/.test(header);
}

/**
 * Entry names of a ZIP archive from its central directory (ZIP64 too), read through `reader`, bounded.
 * Undefined when the archive's end records do not make sense.
 */
async function zipEntryNames(file: ModelFile, reader: FileReader, head: Uint8Array): Promise<string[] | undefined> {
  const names: string[] = [];
  // The first local header: PyTorch writes <archive>/data.pkl first, so this usually decides it.
  const h = Buffer.from(head.buffer, head.byteOffset, head.length);
  if (h.length >= 30 && h.readUInt32LE(0) === 0x04034b50) {
    const n = h.readUInt16LE(26);
    if (30 + n <= h.length) names.push(h.subarray(30, 30 + n).toString('utf8'));
    if (names.some((x) => /\.(pkl|pickle)$/i.test(x))) return names;
  }
  const tailLen = Math.min(file.size, ZIP_TAIL_BYTES);
  const tail = Buffer.from(await reader.read(file.path, file.size - tailLen, tailLen));
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) return undefined;
  let count = tail.readUInt16LE(eocd + 10);
  let dirSize = tail.readUInt32LE(eocd + 12);
  let dirOffset = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || tail.readUInt32LE(loc) !== 0x07064b50) return undefined;
    const recordAt = Number(tail.readBigUInt64LE(loc + 8));
    if (!Number.isSafeInteger(recordAt) || recordAt + 56 > file.size) return undefined;
    const rec = Buffer.from(await reader.read(file.path, recordAt, 56));
    if (rec.length < 56 || rec.readUInt32LE(0) !== 0x06064b50) return undefined;
    count = Number(rec.readBigUInt64LE(32));
    dirSize = Number(rec.readBigUInt64LE(40));
    dirOffset = Number(rec.readBigUInt64LE(48));
  }
  if (!Number.isSafeInteger(dirOffset) || !Number.isSafeInteger(dirSize) || dirSize > MAX_ZIP_DIRECTORY || dirOffset + dirSize > file.size) return undefined;
  const dir = Buffer.from(await reader.read(file.path, dirOffset, dirSize));
  let at = 0;
  for (let i = 0; i < count && at + 46 <= dir.length; i++) {
    if (dir.readUInt32LE(at) !== 0x02014b50) return undefined;
    const nameLen = dir.readUInt16LE(at + 28);
    const extraLen = dir.readUInt16LE(at + 30);
    const commentLen = dir.readUInt16LE(at + 32);
    if (at + 46 + nameLen > dir.length) return undefined;
    names.push(dir.subarray(at + 46, at + 46 + nameLen).toString('utf8'));
    at += 46 + nameLen + extraLen + commentLen;
  }
  return names;
}
