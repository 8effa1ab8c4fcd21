// /app/models/<id>/manifest.json as the runtime reads it (written by bake's package step,
// src/pipeline/model.ts modelManifest). Parsed defensively: it comes from an image anyone may build.
import { readFile, stat } from 'node:fs/promises';
import { isSha256Hex } from '../util/digest.js';
import type { EmbeddingSpec, RerankSpec } from '../recipe/types.js';
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
  /** spec: the recipe's quantize block, so a runtime without the bytes can redo the step. */
  quantization: { format: string; params?: unknown; spec?: Record<string, unknown> };
  verification?: unknown;
  /** How the model is served: a sentence embedder or a reranker (the recipe's declaration). */
  embedding?: EmbeddingSpec;
  rerank?: RerankSpec;
  /**
   * Unbundled images: the model's layer as `bake push` pushed it (the bundled image's layer for this
   * model), fetched at start from `repository` by digest.
   */
  layer?: { digest: string; size: number; repository: string };
  /** false: the image holds only this manifest; the runtime gets `files` at start (src/runtime/unbundled.ts). Absent = true. */
  bundled?: boolean;
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
    quantization: { format: q.format, params: q.params, ...(q.spec && typeof q.spec === 'object' && !Array.isArray(q.spec) ? { spec: q.spec as Record<string, unknown> } : {}) },
    verification: o.verification,
  };
  if (o.embedding !== undefined) m.embedding = parseEmbedding(o.embedding, file);
  if (o.rerank !== undefined) m.rerank = parseRerank(o.rerank, file);
  if (o.layer !== undefined) {
    const l = o.layer as Record<string, unknown> | null;
    if (!l || typeof l.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(l.digest) || typeof l.size !== 'number' || !Number.isSafeInteger(l.size) || l.size < 0 || typeof l.repository !== 'string' || !/^[^\s/]+\/[a-z0-9._/-]+$/.test(l.repository)) {
      throw bad(file, 'layer', '{digest: sha256:<64 hex>, size, repository: host/name}');
    }
    m.layer = { digest: l.digest, size: l.size, repository: l.repository };
  }
  if (typeof o.task === 'string') m.task = o.task;
  if (o.bundled !== undefined) {
    if (typeof o.bundled !== 'boolean') throw bad(file, 'bundled', 'true or false');
    m.bundled = o.bundled;
  }
  return m;
}

const tokensOk = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65536;

function parseEmbedding(v: unknown, file: string): EmbeddingSpec {
  const e = v as Record<string, unknown> | null;
  const prefixes = e?.prefixes as Record<string, unknown> | undefined;
  if (!e || typeof e !== 'object' || (e.pooling !== 'mean' && e.pooling !== 'cls') || typeof e.normalize !== 'boolean' || !tokensOk(e.max_tokens)
    || !prefixes || typeof prefixes !== 'object' || Object.keys(prefixes).length > 64 || !Object.values(prefixes).every((p) => typeof p === 'string' && p.length <= 1000)
    || (e.default_prefix !== undefined && (typeof e.default_prefix !== 'string' || !(e.default_prefix in prefixes))) || (e.output !== undefined && typeof e.output !== 'string')) {
    throw bad(file, 'embedding', '{pooling: mean|cls, normalize, prefixes: {name: text}, max_tokens}');
  }
  return { pooling: e.pooling, normalize: e.normalize, prefixes: prefixes as Record<string, string>, max_tokens: e.max_tokens as number, ...(e.default_prefix !== undefined && { default_prefix: e.default_prefix as string }), ...(e.output !== undefined && { output: e.output as string }) };
}

function parseRerank(v: unknown, file: string): RerankSpec {
  const r = v as Record<string, unknown> | null;
  if (!r || typeof r !== 'object' || (r.activation !== 'sigmoid' && r.activation !== 'none') || !tokensOk(r.max_tokens)) throw bad(file, 'rerank', '{activation: sigmoid|none, max_tokens}');
  return { activation: r.activation, max_tokens: r.max_tokens as number };
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
