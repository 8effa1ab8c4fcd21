// Images -> a float tensor [1, C, H, W] or [1, H, W, C]: decoded by sharp (libvips), transparent pixels
// flattened onto white, resized (stretched, or height-fixed with the width following the aspect ratio, as
// text-line recognisers take them), channel order and normalization as the recipe says, then padded.
import sharp, { type OutputInfo } from 'sharp';
import type { PreprocessSpec } from '../recipe/types.js';
import { InputError } from '../util/errors.js';
import { channelParams, checkSize, type InputTarget, type Where } from './common.js';

/** Pixels libvips may decode from one file (a decompression bomb stops here, not in memory). */
const MAX_PIXELS = 2 ** 26;

const isChannelDim = (d: number | string | undefined) => d === 1 || d === 3;

export interface ImageGeometry { height: number; width: number; outHeight: number; outWidth: number }

/** Resized size (height, width) and final size after padding, for a source of srcH x srcW pixels. */
export function imageGeometry(srcH: number, srcW: number, pre: PreprocessSpec, fixed: { height?: number; width?: number }, field: string): ImageGeometry {
  const r = pre.resize;
  if (Array.isArray(r)) return { height: r[0], width: r[1], outHeight: r[0], outWidth: r[1] };
  if (r) {
    let height: number, width: number;
    if (r.keep_aspect) {
      if (r.height !== undefined) {
        height = r.height;
        width = Math.max(1, Math.ceil((srcW * height) / srcH));
        if (r.width !== undefined) width = Math.min(width, r.width);
      } else if (r.width !== undefined) {
        width = r.width;
        height = Math.max(1, Math.ceil((srcH * width) / srcW));
      } else {
        throw new InputError(`${field}.preprocess.resize: keep_aspect needs a height (or a width)`, { field: `${field}.preprocess.resize`, expected: '{ height: 48, width: 320, keep_aspect: true, pad: true }' });
      }
    } else {
      if (r.height === undefined || r.width === undefined) {
        throw new InputError(`${field}.preprocess.resize: give both height and width, or keep_aspect: true`, { field: `${field}.preprocess.resize`, expected: '[height, width], or { height, width, keep_aspect: true }' });
      }
      height = r.height;
      width = r.width;
    }
    if (!r.pad) return { height, width, outHeight: height, outWidth: width };
    if (r.height === undefined || r.width === undefined) {
      throw new InputError(`${field}.preprocess.resize: pad needs both height and width (the padded size)`, { field: `${field}.preprocess.resize`, expected: '{ height, width, keep_aspect: true, pad: true }' });
    }
    return { height: Math.min(height, r.height), width: Math.min(width, r.width), outHeight: r.height, outWidth: r.width };
  }
  // No resize: the model's fixed size when it has one, else the picture's own.
  if (fixed.height !== undefined && fixed.width !== undefined) return { height: fixed.height, width: fixed.width, outHeight: fixed.height, outWidth: fixed.width };
  return { height: srcH, width: srcW, outHeight: srcH, outWidth: srcW };
}

export async function decodeImage(bytes: Buffer, pre: PreprocessSpec, target: InputTarget, where: Where): Promise<{ dims: number[]; data: Float32Array }> {
  if (target.dtype !== 'float32' || target.dims.length !== 4) {
    throw new InputError(`${where.field}: images make a float tensor of rank 4, but model input ${target.name} is ${target.dtype} of rank ${target.dims.length}`, {
      field: `${where.field}.input`, expected: 'a float input shaped [N, C, H, W] or [N, H, W, C]', hint: `name the image input in ${where.field}.input, or use kind: npy for other tensors`,
    });
  }
  const d = target.dims;
  const layout = pre.layout ?? (isChannelDim(d[1]) ? 'NCHW' : isChannelDim(d[3]) ? 'NHWC' : 'NCHW');
  const [cAxis, hAxis, wAxis] = layout === 'NCHW' ? [1, 2, 3] : [3, 1, 2];
  const num = (x: number | string | undefined) => (typeof x === 'number' ? x : undefined);
  const channels = pre.channels ?? (d[cAxis] === 1 ? 'gray' : 'RGB');
  const C = channels === 'gray' ? 1 : 3;

  let srcH: number, srcW: number;
  const image = () => sharp(bytes, { limitInputPixels: MAX_PIXELS, failOn: 'error', autoOrient: true });
  try {
    const meta = await image().metadata();
    srcH = meta.autoOrient?.height ?? meta.height;
    srcW = meta.autoOrient?.width ?? meta.width;
    if (!srcH || !srcW) throw new Error('no image size');
  } catch (err) {
    throw new InputError(`${where.field}: cannot decode ${where.file} as an image: ${(err as Error).message}`, {
      file: where.file, field: `${where.field}.path`, expected: 'PNG, JPEG, WebP, TIFF or GIF files', hint: 'remove or replace the file', cause: err,
    });
  }
  const g = imageGeometry(srcH, srcW, pre, { height: num(d[hAxis]), width: num(d[wAxis]) }, where.field);
  const dims = layout === 'NCHW' ? [1, C, g.outHeight, g.outWidth] : [1, g.outHeight, g.outWidth, C];
  checkSize(C * g.outHeight * g.outWidth, dims, where);

  let raw: { data: Buffer; info: OutputInfo };
  try {
    const pipeline = image().flatten({ background: '#ffffff' }).resize(g.width, g.height, { fit: 'fill' });
    raw = await (channels === 'gray' ? pipeline.grayscale() : pipeline.toColourspace('srgb')).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new InputError(`${where.field}: cannot decode ${where.file}: ${(err as Error).message}`, { file: where.file, field: `${where.field}.path`, cause: err });
  }
  const { data, info } = raw;
  const scale = pre.normalize?.scale ?? 1 / 255;
  const mean = channelParams(pre.normalize?.mean, C, 0, `${where.field}.preprocess.normalize.mean`);
  const std = channelParams(pre.normalize?.std, C, 1, `${where.field}.preprocess.normalize.std`);
  const out = new Float32Array(C * g.outHeight * g.outWidth).fill(pre.pad_value ?? 0);
  const plane = g.outHeight * g.outWidth;
  for (let c = 0; c < C; c++) {
    // BGR tensors take the picture's channels in reverse; a grey source feeds every channel.
    const src = Math.min(channels === 'BGR' ? 2 - c : c, info.channels - 1);
    for (let y = 0; y < g.height; y++) {
      for (let x = 0; x < g.width; x++) {
        const v = (data[(y * g.width + x) * info.channels + src]! * scale - mean[c]!) / std[c]!;
        out[layout === 'NCHW' ? c * plane + y * g.outWidth + x : (y * g.outWidth + x) * C + c] = v;
      }
    }
  }
  return { dims, data: out };
}
