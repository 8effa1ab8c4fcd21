// A GGUF file as a ModelSource, for requantizing: F32 / F16 / BF16 tensors are read on demand, and each
// says where its bytes are (`stored`), so the quantizer's workers can read them straight from the file.
import { open } from 'node:fs/promises';
import { kvValue, readGguf, readTensorBytes } from '../../formats/gguf/index.js';
import type { ModelSource, SourceTensor } from '../../convert/source.js';
import { InputError } from '../../util/errors.js';
import { ggmlTypeById, tensorBytes } from './types.js';

const FLOAT_INPUTS = new Set(['F32', 'F16', 'BF16']);

/** A tensor whose bytes are a plain range of a file (as stored: `typeName`), readable without the JavaScript reader. */
export interface StoredTensor extends SourceTensor {
  stored: { path: string; offset: number };
}

export function isStored(t: SourceTensor): t is StoredTensor {
  return (t as Partial<StoredTensor>).stored !== undefined;
}

export async function ggufModelSource(path: string): Promise<ModelSource> {
  const file = await readGguf(path, {
    tensorBytes: (id, ne) => {
      const t = ggmlTypeById(id);
      return t ? tensorBytes(t, ne) : undefined;
    },
  });
  const arch = kvValue(file, 'general.architecture');
  if (typeof arch !== 'string') {
    throw new InputError(`${path}: general.architecture is missing`, { file: path, field: 'general.architecture', expected: 'a string' });
  }
  const num = (key: string, fallback?: number): number => {
    const v = kvValue(file, `${arch}.${key}`) ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new InputError(`${path}: ${arch}.${key} is ${JSON.stringify(v ?? null)}`, { file: path, field: `${arch}.${key}`, expected: 'a positive integer' });
    }
    return v;
  };
  const nHead = num('attention.head_count');
  const tensors: StoredTensor[] = file.tensors.map((info) => {
    const type = ggmlTypeById(info.type)!;
    if (!FLOAT_INPUTS.has(type.name)) {
      throw new InputError(`${path}: tensor ${info.name} is ${type.name}`, {
        file: path, field: info.name, expected: 'F32, F16 or BF16 tensors', hint: 'requantize from the unquantized GGUF (requantizing quantized data compounds the error)',
      });
    }
    const length = tensorBytes(type, info.dims)!;
    const readRaw = async (into?: Uint8Array): Promise<Uint8Array> => {
      const fh = await open(path, 'r');
      try {
        return await readTensorBytes(file, info, length, fh, into);
      } finally {
        await fh.close();
      }
    };
    return {
      name: info.name,
      ne: info.dims,
      typeName: type.name,
      // The reader checked that the data lies inside the file's data section.
      stored: { path, offset: file.dataOffset + info.offset },
      readRaw,
      readF32: async (into?: Float32Array) => {
        // F32 data is read straight into place (the host is little-endian and buffers are 4-aligned).
        if (type.name === 'F32') {
          const raw = await readRaw(into && new Uint8Array(into.buffer, into.byteOffset, into.byteLength));
          return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
        }
        const raw = await readRaw();
        const out = into ?? new Float32Array(length / type.bytesPerBlock);
        type.dequantize(raw, out);
        return out;
      },
    };
  });
  return {
    arch,
    nLayer: num('block_count'),
    nHead,
    nHeadKv: num('attention.head_count_kv', nHead),
    kvs: file.kvs.filter((kv) => kv.key !== 'general.alignment'),
    tensors,
  };
}
