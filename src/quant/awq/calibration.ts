// AWQ's calibration data: a text set (the recipe's file, one document per line, or the built-in
// State of the Union set), tokenized with the model's own tokenizer, cut into `samples` windows of
// `length` tokens each starting with what the tokenizer puts first (BOS). Windows are spread evenly over
// the whole concatenated text, so every document contributes. The text's digest keys the quantize step.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { TextTokenizer } from '../../model/llama/tokenizer.js';
import { sha256Bytes, type Sha256Hex } from '../../util/digest.js';
import { InputError } from '../../util/errors.js';

export const BUILTIN_CALIBRATION = 'sotu';
export const DEFAULT_SAMPLES = 128;
export const DEFAULT_LENGTH = 512;

export interface CalibrationText {
  /** `sotu` (built in) or the recipe's file as written. */
  name: string;
  documents: string[];
  sha256: Sha256Hex;
}

/** One document per non-empty line. */
export function calibrationText(name: string, text: string): CalibrationText {
  return { name, documents: text.split(/\n+/).map((s) => s.trim()).filter(Boolean), sha256: sha256Bytes(text) };
}

export async function builtinCalibration(): Promise<CalibrationText> {
  const file = fileURLToPath(new URL('./data/sotu.txt', import.meta.url));
  return calibrationText(BUILTIN_CALIBRATION, await readFile(file, 'utf8'));
}

export interface CalibrationSamples {
  tokens: number[][];
  /** Windows the text had room for (>= tokens.length). */
  available: number;
  warnings: string[];
}

export function calibrationSamples(tok: TextTokenizer, set: CalibrationText, samples: number, length: number, where: { model?: string; field?: string } = {}): CalibrationSamples {
  const body = length - tok.prefix.length;
  if (!Number.isInteger(samples) || samples < 1 || !Number.isInteger(length) || body < 1) {
    throw new InputError(`calibration needs at least one sample of at least ${tok.prefix.length + 1} tokens (asked: ${samples} x ${length})`, { field: where.field, expected: 'samples >= 1, length > the BOS prefix' });
  }
  // Documents joined by a newline: each window is continuous text, as in AutoAWQ's concatenated blocks.
  const stream: number[] = [];
  for (const doc of set.documents) {
    for (const t of tok.encode(doc + '\n')) stream.push(t);
  }
  const available = Math.floor(stream.length / body);
  if (available === 0) {
    throw new InputError(`${where.model ? `model ${where.model}: ` : ''}calibration text ${set.name} gives ${stream.length} tokens, fewer than one sample of ${length}`, {
      field: where.field, expected: `at least ${body} tokens of text`, hint: 'use a longer calibration text or a smaller calibration.length',
    });
  }
  const n = Math.min(samples, available);
  const tokens: number[][] = [];
  for (let i = 0; i < n; i++) {
    const w = Math.floor((i * available) / n);
    tokens.push([...tok.prefix, ...stream.slice(w * body, (w + 1) * body)]);
  }
  const warnings = n < samples ? [`calibration text ${set.name} has room for ${available} samples of ${length} tokens, not the ${samples} asked: AWQ calibrated on ${n}`] : [];
  return { tokens, available, warnings };
}
