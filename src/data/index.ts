// Real samples for evaluation and calibration: a folder of images, audio clips or .npy tensors, decoded and
// preprocessed as the recipe says into the tensor one model input takes. Verification (eval data) and static
// quantization (calibration data) both read through here. This module knows files, pixels and samples; it
// knows a model only as the name, element type and declared dims of the input it fills.
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import type { DataSpec } from '../recipe/types.js';
import { digestOf, sha256Bytes, type Sha256Hex } from '../util/digest.js';
import { InputError } from '../util/errors.js';
import { decodeAudio } from './audio.js';
import { decodeImage } from './image.js';
import { decodeNpy } from './npy.js';
import { MAX_SAMPLE_VALUES, type InputTarget, type SampleData } from './common.js';

export { MAX_SAMPLE_VALUES, type InputTarget, type SampleData, type Where } from './common.js';

export interface Sample {
  /** File name inside the data folder. */
  file: string;
  dims: number[];
  data: SampleData;
}

export interface Dataset {
  /** Absolute folder. */
  dir: string;
  /** File names in read order (name order, at most `limit`). */
  files: string[];
  /** sha256 over the names and contents of `files`: enters the cache key of the step that reads them. */
  digest: Sha256Hex;
}

/** File extensions each kind reads; other files in the folder are not read. */
export const DATA_EXTENSIONS: Record<DataSpec['kind'], string[]> = {
  images: ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.gif'],
  audio: ['.wav'],
  npy: ['.npy'],
};

/** Largest data file read (bytes): untrusted files stay bounded (so do decoded tensors: MAX_SAMPLE_VALUES). */
export const MAX_FILE_BYTES = 256 * 2 ** 20;
const MAX_FILES = 10_000;

/** Context for errors: which recipe field the data came from (`verify.data`, `quantize.calibration.data`). */
export interface DataContext {
  field: string;
  /** Folder the spec's path is relative to (the recipe's). */
  baseDir: string;
}

/** Lists the folder's files of the spec's kind and digests them; a missing folder or no file is bad input. */
export async function openDataset(spec: DataSpec, ctx: DataContext): Promise<Dataset> {
  const dir = resolve(ctx.baseDir, spec.path);
  const wanted = DATA_EXTENSIONS[spec.kind];
  let entries: string[];
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a folder');
    entries = await readdir(dir);
  } catch (err) {
    throw new InputError(`${ctx.field}.path: ${dir} is not a readable folder`, {
      field: `${ctx.field}.path`, expected: `a folder (relative to the recipe) holding ${spec.kind} files (${wanted.join(' ')})`, hint: 'create the folder or fix the path', cause: err,
    });
  }
  const root = await realpath(dir);
  const names = entries.filter((n) => !n.startsWith('.') && wanted.includes(extname(n).toLowerCase())).sort();
  const files: string[] = [];
  for (const name of names) {
    if (files.length >= Math.min(spec.limit ?? MAX_FILES, MAX_FILES)) break;
    const file = join(dir, name);
    const st = await lstat(file);
    // A link may point anywhere: only files that really live inside the folder are read.
    const real = st.isSymbolicLink() ? await realpath(file).catch(() => '') : file;
    if (st.isSymbolicLink() && !real.startsWith(root + sep)) {
      throw new InputError(`${ctx.field}: ${file} links outside its folder`, { file, field: `${ctx.field}.path`, expected: 'files inside the data folder', hint: 'copy the file into the folder instead of linking it' });
    }
    if (!(await stat(real)).isFile()) continue;
    files.push(name);
  }
  if (!files.length) {
    throw new InputError(`${ctx.field}.path: ${dir} holds no ${spec.kind} file`, {
      field: `${ctx.field}.path`, expected: `files ending in ${wanted.join(' ')}`, hint: `put the samples in the folder or set ${ctx.field}.kind to the kind they are`,
    });
  }
  const hashes: [string, string][] = [];
  for (const name of files) hashes.push([name, sha256Bytes(await readBounded(join(dir, name), ctx))]);
  return { dir, files, digest: digestOf({ kind: spec.kind, files: hashes }) };
}

/** Content digest of the data a spec names (for step keys), or undefined when there is no spec. */
export async function dataDigest(spec: DataSpec | undefined, ctx: DataContext): Promise<Sha256Hex | undefined> {
  return spec ? (await openDataset(spec, ctx)).digest : undefined;
}

async function readBounded(file: string, ctx: DataContext): Promise<Buffer> {
  const size = (await stat(file)).size;
  if (size > MAX_FILE_BYTES) {
    throw new InputError(`${ctx.field}: ${file} is ${size} bytes, larger than bake reads as one sample`, { file, field: `${ctx.field}.path`, expected: `files of at most ${MAX_FILE_BYTES} bytes`, hint: 'split or shrink the sample' });
  }
  try {
    return await readFile(file);
  } catch (err) {
    throw new InputError(`${ctx.field}: cannot read ${file}: ${(err as Error).message}`, { file, field: `${ctx.field}.path`, cause: err });
  }
}

/** Decodes every file of the dataset (at most `limit`) into a tensor for `target`, checked against its dims. */
export async function loadSamples(ds: Dataset, spec: DataSpec, target: InputTarget, ctx: DataContext, limit?: number): Promise<Sample[]> {
  checkPreprocessFits(spec, ctx);
  const out: Sample[] = [];
  for (const name of ds.files.slice(0, limit ?? ds.files.length)) {
    const file = join(ds.dir, name);
    const bytes = await readBounded(file, ctx);
    const where = { file, field: ctx.field };
    const t = spec.kind === 'images' ? await decodeImage(bytes, spec.preprocess ?? {}, target, where)
      : spec.kind === 'audio' ? decodeAudio(bytes, spec.preprocess ?? {}, target, where)
        : decodeNpy(bytes, target, where);
    checkDims(t.dims, target, spec, file, ctx);
    out.push({ file: name, ...t });
  }
  return out;
}

const KIND_KEYS: Record<DataSpec['kind'], string[]> = {
  images: ['resize', 'normalize', 'layout', 'channels', 'pad_value'],
  audio: ['normalize', 'sample_rate', 'length'],
  npy: [],
};

function checkPreprocessFits(spec: DataSpec, ctx: DataContext): void {
  for (const key of Object.keys(spec.preprocess ?? {})) {
    if (!KIND_KEYS[spec.kind].includes(key)) {
      throw new InputError(`${ctx.field}.preprocess.${key} does not apply to ${spec.kind}`, {
        field: `${ctx.field}.preprocess.${key}`, expected: KIND_KEYS[spec.kind].length ? `for ${spec.kind}: ${KIND_KEYS[spec.kind].join(', ')}` : `no preprocess for ${spec.kind} (the arrays are the tensors)`, hint: `remove ${key}`,
      });
    }
  }
}

function showDims(dims: (number | string | undefined)[]): string {
  return `[${dims.map((d) => (typeof d === 'number' ? String(d) : '?')).join(', ')}]`;
}

/** The sample must have the input's rank and every fixed dim of it. */
function checkDims(dims: number[], target: InputTarget, spec: DataSpec, file: string, ctx: DataContext): void {
  const n = dims.reduce((a, b) => a * b, 1);
  const fits = dims.length === target.dims.length && target.dims.every((d, i) => typeof d !== 'number' || d === dims[i]);
  if (!fits || n > MAX_SAMPLE_VALUES) {
    throw new InputError(`${ctx.field}: ${file} gives a tensor of shape [${dims.join(', ')}] but model input ${target.name} takes ${showDims(target.dims)}`, {
      file, field: spec.kind === 'npy' ? `${ctx.field}.path` : `${ctx.field}.preprocess`,
      expected: `shape ${showDims(target.dims)} (? = any size)${n > MAX_SAMPLE_VALUES ? `, at most ${MAX_SAMPLE_VALUES} values` : ''}`,
      hint: spec.kind === 'images' ? 'set preprocess.resize (and layout/channels) to what the model takes'
        : spec.kind === 'audio' ? 'set preprocess.length (and sample_rate) to what the model takes'
          : `save arrays of the input's shape (a leading batch axis of 1 may be left out)`,
    });
  }
}
