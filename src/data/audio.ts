// WAV clips -> a float tensor filling the last axis of the model input ([1, n], [1, 1, n]...): decoded by
// wavefile (PCM 8-32 bit, float, A-law, mu-law), channels averaged to mono, samples as floats in [-1, 1],
// resampled when the recipe gives a rate, cropped or zero-padded to the length the model takes.
import wavefile from 'wavefile';
import type { PreprocessSpec } from '../recipe/types.js';
import { InputError } from '../util/errors.js';
import { channelParams, checkSize, type InputTarget, type Where } from './common.js';

export function decodeAudio(bytes: Buffer, pre: PreprocessSpec, target: InputTarget, where: Where): { dims: number[]; data: Float32Array } {
  if (target.dtype !== 'float32' || target.dims.length < 1) {
    throw new InputError(`${where.field}: audio makes a float tensor, but model input ${target.name} is ${target.dtype} of rank ${target.dims.length}`, {
      field: `${where.field}.input`, expected: 'a float input whose last axis is time', hint: `name the audio input in ${where.field}.input, or use kind: npy`,
    });
  }
  let channels: Float64Array[];
  try {
    const wav = new wavefile.WaveFile(bytes);
    wav.toBitDepth('32f');
    if (pre.sample_rate !== undefined && (wav.fmt as { sampleRate: number }).sampleRate !== pre.sample_rate) wav.toSampleRate(pre.sample_rate);
    const s = wav.getSamples(false, Float64Array) as Float64Array | Float64Array[];
    channels = Array.isArray(s) ? s : [s];
    if (!channels.length || !channels[0]!.length) throw new Error('no samples');
  } catch (err) {
    throw new InputError(`${where.field}: cannot decode ${where.file} as WAV audio: ${(err as Error).message}`, {
      file: where.file, field: `${where.field}.path`, expected: 'RIFF WAV files (PCM or float)', hint: 'convert the clip to WAV (e.g. ffmpeg -i clip.mp3 -ar 16000 -ac 1 clip.wav) or remove it', cause: err,
    });
  }
  const fixed = target.dims[target.dims.length - 1];
  const n = pre.length ?? (typeof fixed === 'number' ? fixed : channels[0]!.length);
  const dims = [...Array(target.dims.length - 1).fill(1), n];
  checkSize(n, dims, where);
  const scale = pre.normalize?.scale ?? 1;
  const [mean] = channelParams(pre.normalize?.mean, 1, 0, `${where.field}.preprocess.normalize.mean`);
  const [std] = channelParams(pre.normalize?.std, 1, 1, `${where.field}.preprocess.normalize.std`);
  const out = new Float32Array(n);
  const m = Math.min(n, channels[0]!.length);
  for (let i = 0; i < m; i++) {
    let v = 0;
    for (const ch of channels) v += ch[i]!;
    out[i] = ((v / channels.length) * scale - mean!) / std!;
  }
  return { dims, data: out };
}
