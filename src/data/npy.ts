// NumPy .npy arrays -> the model input's tensor, read strictly: format versions 1-3, little-endian numeric
// dtypes, C order, and data exactly as long as the shape says. A missing leading batch axis of 1 is added.
// (Hand-written: the .npy header is a few lines of spec, and the npm reader at hand took big-endian data
// for little-endian and did not check the data length against the shape.)
import { InputError } from '../util/errors.js';
import { checkSize, type InputTarget, type SampleData, type Where } from './common.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DTYPES: Record<string, { bytes: number; float: boolean; read: (v: DataView, o: number) => number | bigint }> = {
  f2: { bytes: 2, float: true, read: (v, o) => halfToFloat(v.getUint16(o, true)) },
  f4: { bytes: 4, float: true, read: (v, o) => v.getFloat32(o, true) },
  f8: { bytes: 8, float: true, read: (v, o) => v.getFloat64(o, true) },
  i1: { bytes: 1, float: false, read: (v, o) => v.getInt8(o) },
  u1: { bytes: 1, float: false, read: (v, o) => v.getUint8(o) },
  b1: { bytes: 1, float: false, read: (v, o) => v.getUint8(o) },
  i2: { bytes: 2, float: false, read: (v, o) => v.getInt16(o, true) },
  u2: { bytes: 2, float: false, read: (v, o) => v.getUint16(o, true) },
  i4: { bytes: 4, float: false, read: (v, o) => v.getInt32(o, true) },
  u4: { bytes: 4, float: false, read: (v, o) => v.getUint32(o, true) },
  i8: { bytes: 8, float: false, read: (v, o) => v.getBigInt64(o, true) },
};

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? Number.NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

export interface NpyArray { dtype: string; shape: number[]; view: DataView; offset: number }

/** Parses the header of an .npy file; throws a plain Error saying what is wrong (the caller names the file). */
export function parseNpy(bytes: Uint8Array): NpyArray {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw new Error('not an .npy file (no \\x93NUMPY magic)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6]!;
  if (major < 1 || major > 3) throw new Error(`.npy format version ${major} is not one of 1, 2, 3`);
  const headerLen = major === 1 ? view.getUint16(8, true) : bytes.length >= 12 ? view.getUint32(8, true) : Infinity;
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > bytes.length) throw new Error('header runs past the end of the file');
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new Error(`malformed header ${JSON.stringify(header.slice(0, 120))}`);
  if (fortran === 'True') throw new Error('array is in Fortran order; save it C-ordered (np.ascontiguousarray)');
  const order = descr[0], code = descr.slice(1);
  if (order === '>' && !['i1', 'u1', 'b1'].includes(code)) throw new Error(`dtype ${descr} is big-endian; save it little-endian (arr.astype('<${code}'))`);
  if (!'<|='.includes(order ?? '') || !DTYPES[code]) throw new Error(`dtype ${descr} is not a numeric type bake reads (float16/32/64, int8-64, uint8-32, bool)`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map((s) => Number(s));
  if (shape.some((n) => !Number.isSafeInteger(n) || n < 0)) throw new Error(`shape (${shapeText}) is not a tuple of sizes`);
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  if (!Number.isSafeInteger(count) || count * DTYPES[code]!.bytes !== bytes.length - offset) {
    throw new Error(`shape (${shape.join(', ')}) of ${descr} needs ${count * DTYPES[code]!.bytes} data bytes, the file has ${bytes.length - offset}`);
  }
  return { dtype: code, shape, view, offset };
}

export function decodeNpy(bytes: Uint8Array, target: InputTarget, where: Where): { dims: number[]; data: SampleData } {
  let arr: NpyArray;
  try {
    arr = parseNpy(bytes);
  } catch (err) {
    throw new InputError(`${where.field}: cannot read ${where.file}: ${(err as Error).message}`, {
      file: where.file, field: `${where.field}.path`, expected: 'NumPy .npy files (np.save) of a numeric dtype', hint: 'fix or remove the file', cause: err,
    });
  }
  const t = DTYPES[arr.dtype]!;
  if (t.float && target.dtype !== 'float32') {
    throw new InputError(`${where.field}: ${where.file} holds ${arr.dtype} values but model input ${target.name} takes ${target.dtype}`, {
      file: where.file, field: `${where.field}.path`, expected: `integer arrays for ${target.name}`, hint: `save the arrays as ${target.dtype}, or name another input in ${where.field}.input`,
    });
  }
  const dims = arr.shape.length === target.dims.length - 1 ? [1, ...arr.shape] : arr.shape;
  const n = arr.shape.reduce((a, b) => a * b, 1);
  checkSize(n, dims, where);
  const data = target.dtype === 'float32' ? new Float32Array(n) : target.dtype === 'int64' ? new BigInt64Array(n) : new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = t.read(arr.view, arr.offset + i * t.bytes);
    if (data instanceof BigInt64Array) data[i] = BigInt(v);
    else data[i] = Number(v);
  }
  return { dims, data };
}
