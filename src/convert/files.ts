// Reading the small JSON files of a model folder defensively: absent is undefined, malformed is an
// InputError naming the file, and nothing outside the folder is opened.
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { InputError } from '../util/errors.js';

export type Json = Record<string, unknown>;

/** JSON files of a model folder are small; a bigger one is a mistake, not something to parse. */
const MAX_JSON_BYTES = 64 << 20;

export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The parsed JSON value of `path`, or undefined when there is no such file. */
export async function readJsonValueIfExists(path: string): Promise<unknown> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) return undefined;
    size = s.size;
  } catch {
    return undefined;
  }
  if (size > MAX_JSON_BYTES) throw new InputError(`${path}: ${size} bytes is too large for this file`, { file: path, expected: `a JSON file under ${MAX_JSON_BYTES} bytes` });
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (err) {
    throw new InputError(`${path}: ${(err as Error).message}`, { file: path, expected: 'valid JSON' });
  }
}

/** A JSON object file, or undefined when there is no such file. */
export async function readJsonIfExists(path: string): Promise<Json | undefined> {
  const v = await readJsonValueIfExists(path);
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new InputError(`${path}: not a JSON object`, { file: path, expected: 'a JSON object' });
  return v as Json;
}

/** `dir`/`rel` when `rel` (a path a model file names) stays inside `dir`; undefined otherwise. */
export function insideFolder(dir: string, rel: string): string | undefined {
  if (typeof rel !== 'string' || isAbsolute(rel) || rel.includes('\0')) return undefined;
  const n = normalize(rel);
  if (n === '..' || n.startsWith(`..${sep}`)) return undefined;
  return join(dir, n);
}
