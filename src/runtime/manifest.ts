// /app/models/<id>/manifest.json as the runtime reads it (written by bake's package step,
// src/pipeline/model.ts modelManifest). Parsed defensively: it comes from an image anyone may build.
import { readFile, stat } from 'node:fs/promises';
import { isSha256Hex } from '../util/digest.js';
import { InputError } from '../util/errors.js';
import { safeJoin } from '../util/fs.js';

export const MANIFEST_FILE = 'manifest.json';
const MAX_MANIFEST_BYTES = 8 << 20;
const MAX_FILES = 100_000;

export interface ManifestFile {
  path: string;
  sha256: string;
  size: number;
  lfs?: boolean;
}

export interface ModelManifest {
  schema: string;
  id: string;
  task?: string;
  source: { type: string; repo: string; revision?: string; commit: string; files: ManifestFile[] };
  /** The files of the model folder (manifest.json itself excluded). */
  files: ManifestFile[];
  quantization: { format: string; params?: unknown };
  verification?: unknown;
  /** false: the image holds only this manifest; the runtime fetches `files` at start. Absent = true. */
  bundled?: boolean;
  /** Where the files are fetched from when not bundled: a Hub repo at a commit. */
  fetch?: { repo: string; commit: string; revision?: string };
}

function bad(file: string, field: string, expected: string): InputError {
  return new InputError(`${file}: ${field} is missing or malformed`, {
    file,
    field,
    expected,
    hint: 'the image was built by a different bake version or the file was edited; rebuild the image with `bake build`',
  });
}

function parseFiles(value: unknown, file: string, field: string): ManifestFile[] {
  if (!Array.isArray(value) || value.length > MAX_FILES) throw bad(file, field, `an array of at most ${MAX_FILES} {path, sha256, size}`);
  return value.map((f: unknown, i) => {
    const o = f as Record<string, unknown> | null;
    const at = `${field}[${i}]`;
    if (!o || typeof o !== 'object') throw bad(file, at, 'an object {path, sha256, size}');
    // A path must stay inside the model folder: no absolute paths, no `..`.
    if (typeof o.path !== 'string' || !safeJoin('/m', o.path)) throw bad(file, `${at}.path`, 'a relative path inside the model folder');
    if (!isSha256Hex(o.sha256)) throw bad(file, `${at}.sha256`, '64 lowercase hex digits');
    if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0) throw bad(file, `${at}.size`, 'a non-negative integer');
    const out: ManifestFile = { path: o.path, sha256: o.sha256, size: o.size };
    if (typeof o.lfs === 'boolean') out.lfs = o.lfs;
    return out;
  });
}

export function parseManifest(text: string, file: string): ModelManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InputError(`${file} is not valid JSON: ${(err as Error).message}`, { file, hint: 'rebuild the image with `bake build`' });
  }
  const o = raw as Record<string, unknown> | null;
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw bad(file, '(top level)', 'a JSON object');
  if (typeof o.id !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,63}$/.test(o.id)) throw bad(file, 'id', 'a model id like `minilm-int8`');
  const src = o.source as Record<string, unknown> | null;
  if (!src || typeof src !== 'object' || typeof src.repo !== 'string' || typeof src.commit !== 'string') {
    throw bad(file, 'source', '{type, repo, revision, commit, files}');
  }
  const q = o.quantization as Record<string, unknown> | null;
  if (!q || typeof q !== 'object' || typeof q.format !== 'string') throw bad(file, 'quantization.format', 'a string such as gguf or onnx-int8');
  const m: ModelManifest = {
    schema: typeof o.schema === 'string' ? o.schema : '',
    id: o.id,
    source: {
      type: typeof src.type === 'string' ? src.type : 'hub',
      repo: src.repo,
      revision: typeof src.revision === 'string' ? src.revision : undefined,
      commit: src.commit,
      files: src.files === undefined ? [] : parseFiles(src.files, file, 'source.files'),
    },
    files: parseFiles(o.files, file, 'files'),
    quantization: { format: q.format, params: q.params },
    verification: o.verification,
  };
  if (typeof o.task === 'string') m.task = o.task;
  if (o.bundled !== undefined) {
    if (typeof o.bundled !== 'boolean') throw bad(file, 'bundled', 'true or false');
    m.bundled = o.bundled;
  }
  if (o.fetch !== undefined) {
    const f = o.fetch as Record<string, unknown> | null;
    if (!f || typeof f.repo !== 'string' || typeof f.commit !== 'string') throw bad(file, 'fetch', '{repo, commit}');
    m.fetch = { repo: f.repo, commit: f.commit, revision: typeof f.revision === 'string' ? f.revision : undefined };
  }
  return m;
}

/** Reads and parses a manifest, refusing oversized files before reading them. */
export async function readManifest(file: string): Promise<ModelManifest> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    throw new InputError(`no model manifest at ${file}`, { file, hint: 'the model folder is incomplete: rebuild the image with `bake build`', cause: err });
  }
  if (size > MAX_MANIFEST_BYTES) throw new InputError(`${file} is ${size} bytes; a manifest is at most ${MAX_MANIFEST_BYTES}`, { file });
  return parseManifest(await readFile(file, 'utf8'), file);
}

/** The build ARG naming where an unbundled model is fetched from: BAKE_FETCH_<ID> = org/name@commit. */
export function fetchArgName(id: string): string {
  return `BAKE_FETCH_${id.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** Parses `org/name@<40-hex commit>` (the BAKE_FETCH_<ID> value). */
export function parseFetchRef(value: string, field: string): { repo: string; commit: string } {
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*)@([0-9a-f]{40})$/.exec(value.trim());
  if (!m) throw new InputError(`${field} is ${JSON.stringify(value)}, not org/name@<40-hex commit sha>`, { field, expected: 'org/name@<40-hex commit sha>' });
  return { repo: m[1]!, commit: m[2]! };
}
