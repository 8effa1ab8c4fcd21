// What the decoders share: the input a sample fills, where an error is, per-channel constants.
import { InputError } from '../util/errors.js';

/** Largest tensor made from one file (values), checked before allocating it. */
export const MAX_SAMPLE_VALUES = 2 ** 26;

export type SampleData = Float32Array | BigInt64Array | Int32Array;

/** The model input a sample fills: dims are numbers when fixed, names or undefined when free. */
export interface InputTarget {
  name: string;
  dtype: 'float32' | 'int64' | 'int32';
  dims: (number | string | undefined)[];
}

/** Normalization constants per channel: a one-element list applies to every channel. */
export function channelParams(values: number[] | undefined, channels: number, dflt: number, field: string): number[] {
  if (!values) return Array(channels).fill(dflt);
  if (values.length === 1) return Array(channels).fill(values[0]);
  if (values.length !== channels) {
    throw new InputError(`${field} has ${values.length} values for ${channels} channel(s)`, { field, expected: `1 or ${channels} values`, hint: 'give one value per channel, or one for all' });
  }
  return values;
}

export interface Where { file: string; field: string }

/** Refuses a tensor too large to make from one file, before allocating it. */
export function checkSize(values: number, dims: number[], where: Where): void {
  if (!Number.isSafeInteger(values) || values > MAX_SAMPLE_VALUES) {
    throw new InputError(`${where.file} would become a tensor of shape [${dims.join(', ')}] (${values} values), too large for one sample`, {
      file: where.file, field: `${where.field}.preprocess`, expected: `at most ${MAX_SAMPLE_VALUES} values per sample`, hint: 'resize or crop the samples to what the model takes',
    });
  }
}
