// A model's `verify.eval`: the text file verification runs on (one sample a line), named relative to
// the recipe or by an absolute path; `default` (or nothing) means the built-in text set.
import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { InputError } from '../util/errors.js';
import type { ModelSpec } from './types.js';

/** Eval texts are read whole: a bound, so a mistaken path to a weights file fails clearly. */
export const MAX_EVAL_BYTES = 64 << 20;

/** The eval text of `model`, or undefined for the built-in set. Throws InputError naming the field. */
export async function readEvalText(model: ModelSpec, recipeFile: string): Promise<string | undefined> {
  const value = model.verify.eval;
  if (value === undefined || value === 'default') return undefined;
  return readRecipeTextFile(recipeFile, value, `models.${model.id}.verify.eval`);
}

/**
 * A text file a recipe field names (eval texts, calibration texts): relative to the recipe or absolute,
 * at most MAX_EVAL_BYTES. Throws InputError naming the field.
 */
export async function readRecipeTextFile(recipeFile: string, value: string, field: string): Promise<string> {
  const file = resolve(dirname(recipeFile), value);
  const fail = (what: string, cause?: unknown) =>
    new InputError(`${field}: ${what}`, {
      file: recipeFile, field, cause,
      expected: 'a text file, one sample a line, relative to the recipe or an absolute path (or `default` for the built-in texts)',
      hint: `write ${file}, or change ${field} in ${recipeFile}`,
    });
  let size: number;
  try {
    const s = await stat(file);
    if (!s.isFile()) throw fail(`${file} is not a file`);
    size = s.size;
  } catch (err) {
    if (err instanceof InputError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw fail(code === 'ENOENT' || code === 'ENOTDIR' ? `${file} does not exist` : `cannot read ${file} (${code ?? (err as Error).message})`, err);
  }
  if (size > MAX_EVAL_BYTES) throw fail(`${file} is ${size} bytes, more than the ${MAX_EVAL_BYTES} an eval text may have`);
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw fail(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, err);
  }
}
