// Hugging Face checkpoint folder -> ModelSource for GGUF: picks the architecture from config.json, checks
// the checkpoint's tensors against it, maps tensor names, applies the architecture's transforms, and
// gathers hyper-parameter and tokenizer metadata. Tensors are read one at a time when the writer asks.
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { GgufKv } from '../formats/gguf/index.js';
import { openCheckpoint, readTensorF32, type Checkpoint, type SafetensorsTensor } from '../formats/safetensors/index.js';
import { InputError } from '../util/errors.js';
import { architectureFor, type Architecture } from './architectures/index.js';
import type { ModelSource, SourceTensor } from './source.js';
import { ggufModelName } from './model-name.js';
import { checkTensorSet } from './tensor-set.js';
import { tokenizerKvs } from './tokenizer/index.js';

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

export interface HfSourceOptions {
  /**
   * The model folder's name as the user knows it, for general.name when neither the model card nor
   * config.json names the model (default: the last segment of `srcDir`).
   */
  folderName?: string;
}

export async function hfModelSource(srcDir: string, opts: HfSourceOptions = {}): Promise<ModelSource> {
  const configFile = join(srcDir, 'config.json');
  let config: Record<string, unknown>;
  try {
    const parsed = JSON.parse(await readFile(configFile, 'utf8')) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
    config = parsed as Record<string, unknown>;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new InputError(`${configFile}: ${missing ? 'missing' : (err as Error).message}`, {
      file: configFile, expected: 'a Hugging Face config.json', hint: missing ? 'point at a Hugging Face model folder' : undefined,
    });
  }
  const arch = architectureFor(config, configFile);
  const shape = arch.shape(config, configFile);
  const checkpoint = canonicalNames(await openCheckpoint(srcDir), arch);
  checkTensorSet(checkpoint, {
    configFile,
    hfArchitecture: (config.architectures as string[])[0]!,
    nLayer: shape.nLayer,
    sizedBy: arch.sizedBy,
    expected: () => arch.expectedTensors(config, shape, configFile),
    dropped: (n) => arch.tensorName(n) === null,
  });
  const tokenizer = arch.tokenizerKvs ? await arch.tokenizerKvs(srcDir, config) : await tokenizerKvs(srcDir, config);

  const tensors: SourceTensor[] = [];
  for (const [hfName, t] of checkpoint.tensors) {
    const name = arch.tensorName(hfName);
    if (name === null) continue;
    // Every tensor that passed checkTensorSet is one the architecture expects, so it has a name.
    if (name === undefined) throw new Error(`internal: ${arch.ggufArch} expects ${hfName} but has no GGUF name for it`);
    if (!FLOAT_DTYPES.has(t.dtype)) {
      throw new InputError(`${t.file}: tensor ${hfName} is ${t.dtype}`, { file: t.file, field: hfName, expected: 'F32, F16 or BF16 weights (quantized checkpoints are not converted)' });
    }
    tensors.push(hfTensor(name, t, arch.transform ? (d) => arch.transform!(name, d, t.shape, shape) : undefined));
  }

  const name = await ggufModelName(srcDir, config, opts.folderName ?? basename(resolve(srcDir)));
  const kvs: GgufKv[] = [
    { key: 'general.architecture', type: 'string', value: arch.ggufArch },
    { key: 'general.type', type: 'string', value: 'model' },
    { key: 'general.name', type: 'string', value: name },
    ...arch.hyperParameters(config, shape, configFile),
    ...(arch.folderKvs ? await arch.folderKvs(srcDir, config, configFile) : []),
    ...tokenizer,
  ];
  return { arch: arch.ggufArch, nLayer: shape.nLayer, nHead: shape.nHead, nHeadKv: shape.nHeadKv, kvs, tensors };
}

/** The checkpoint with its tensors under the names the architecture knows them by (two names for one tensor are refused). */
function canonicalNames(checkpoint: Checkpoint, arch: Architecture): Checkpoint {
  if (!arch.canonicalName) return checkpoint;
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, t] of checkpoint.tensors) {
    const canonical = arch.canonicalName(name);
    const other = tensors.get(canonical);
    if (other) {
      throw new InputError(`${t.file}: tensors ${other.name} and ${name} are both ${canonical}`, { file: t.file, field: name, hint: 'the checkpoint holds the same weight twice (with and without a prefix): keep one' });
    }
    tensors.set(canonical, t);
  }
  return { ...checkpoint, tensors };
}

function hfTensor(name: string, t: SafetensorsTensor, transform?: (d: Float32Array) => Float32Array): SourceTensor {
  const readF32 = async (): Promise<Float32Array> => {
    const data = await readTensorF32(t);
    return transform ? transform(data) : data;
  };
  return {
    name,
    ne: t.shape.length === 0 ? [1] : [...t.shape].reverse(),
    typeName: 'F32',
    readF32,
    readRaw: async () => {
      const f = await readF32();
      return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
    },
  };
}
