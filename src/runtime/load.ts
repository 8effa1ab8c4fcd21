// What a serving app calls at start: find /app/models/<id>, check every file against its manifest,
// or (images built with BUNDLE_MODELS=false) fetch the locked files into the Hugging Face cache first.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { hubConfigFromEnv, type HubConfig } from '../hub/config.js';
import { pullModel } from '../hub/pull.js';
import type { LockEntry } from '../lock/types.js';
import { sha256File } from '../util/digest.js';
import { InputError, IntegrityError } from '../util/errors.js';
import { safeJoin } from '../util/fs.js';
import { fetchArgName, MANIFEST_FILE, readManifest, type ModelManifest } from './manifest.js';

export { fetchArgName, parseFetchRef } from './manifest.js';

export const DEFAULT_MODELS_ROOT = '/app/models';

export interface LoadOptions {
  /** Folder holding <id>/manifest.json (default BAKE_MODELS_DIR, else /app/models). */
  root?: string;
  /** Models to load (default every folder under root that has a manifest). */
  ids?: string[];
  /** Hub for models that were not bundled (default HF_ENDPOINT, else https://huggingface.co). */
  hubEndpoint?: string;
  /** Full Hub config (tests); hubEndpoint still wins for the endpoint. */
  hub?: HubConfig;
  /** sha256 (default) re-hashes every file; size checks sizes only, for very large bundled models. */
  check?: 'sha256' | 'size';
  log?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** false: leave the `pre-quantized <id> loaded` line to the caller (the onnx server logs it once the model is open). */
  announce?: boolean;
  /** What each model is doing while it loads (the onnx server's /health shows it). */
  onProgress?: (id: string, what: string) => void;
}

export interface LoadedModel {
  id: string;
  /** Folder holding the model's files (the image's folder, or the Hub cache snapshot when fetched). */
  dir: string;
  manifest: ModelManifest;
  /** Milliseconds spent finding, fetching and checking. */
  ms: number;
  fetched: boolean;
  /** Where the bytes came from: the image, or (unbundled) the registry, a quantize at start, or the cache volume. */
  source: 'image' | 'registry' | 'quantized' | 'cache' | 'hub';
  /** What the load line adds in brackets (where a fetched model landed, what it cost). */
  note?: string;
}

export async function loadModels(opts: LoadOptions = {}): Promise<LoadedModel[]> {
  const env = opts.env ?? process.env;
  const root = opts.root ?? env.BAKE_MODELS_DIR ?? DEFAULT_MODELS_ROOT;
  const log = opts.log ?? (() => {});
  const ids = opts.ids ?? (await listModelIds(root));
  if (ids.length === 0) {
    throw new InputError(`no models under ${root}`, { file: root, expected: `<id>/${MANIFEST_FILE} folders`, hint: 'build the image with `bake build` (models go to /app/models/<id>/), or set BAKE_MODELS_DIR' });
  }
  const out: LoadedModel[] = [];
  for (const id of ids) {
    const t0 = performance.now();
    const folder = safeJoin(root, id);
    if (!folder || id.includes('/')) throw new InputError(`model id ${JSON.stringify(id)} is not a folder name`, { field: 'ids' });
    const manifest = await readManifest(join(folder, MANIFEST_FILE));
    if (manifest.id !== id) {
      throw new InputError(`${join(folder, MANIFEST_FILE)} describes model ${manifest.id}, not ${id}`, { file: join(folder, MANIFEST_FILE), field: 'id', hint: 'rebuild the image with `bake build`' });
    }
    let dir = folder;
    let fetched = false;
    if (manifest.bundled === false) {
      dir = await fetchModel(manifest, opts, env, log);
      fetched = true;
    }
    opts.onProgress?.(id, 'checking');
    await checkFiles(dir, manifest, fetched ? 'sha256' : (opts.check ?? 'sha256'));
    const ms = Math.round(performance.now() - t0);
    const note = fetched ? `fetched into ${dir}` : undefined;
    if (opts.announce !== false) log(`pre-quantized ${id} loaded in ${ms} ms${note ? ` (${note})` : ''}`);
    out.push({ id, dir, manifest, ms, fetched, source: fetched ? 'hub' : 'image', ...(note ? { note } : {}) });
  }
  return out;
}

async function listModelIds(root: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch {
    return [];
  }
  const ids: string[] = [];
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    if (await stat(join(root, e.name, MANIFEST_FILE)).then(() => true, () => false)) ids.push(e.name);
  }
  return ids.sort();
}

/** Every manifest file is there with its size and (by default) sha256. */
export async function checkFiles(dir: string, manifest: ModelManifest, check: 'sha256' | 'size' = 'sha256'): Promise<void> {
  for (const f of manifest.files) {
    const path = safeJoin(dir, f.path);
    if (!path) throw new InputError(`manifest of ${manifest.id} names an unsafe path ${f.path}`, { field: 'files' });
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      throw new IntegrityError(path, `a file of ${f.size} bytes`, 'no file', { hint: `the model folder of ${manifest.id} is incomplete; rebuild the image, or for unbundled images clear the Hub cache volume` });
    }
    if (size !== f.size) throw new IntegrityError(path, `${f.size} bytes`, `${size} bytes`);
    if (check === 'sha256') {
      const { sha256 } = await sha256File(path);
      if (sha256 !== f.sha256) throw new IntegrityError(path, `sha256 ${f.sha256}`, `sha256 ${sha256}`);
    }
  }
}

/** The Hub repo and commit that serve this model's files. */
export function fetchSource(manifest: ModelManifest): { repo: string; commit: string; revision: string } {
  if (manifest.fetch) return { repo: manifest.fetch.repo, commit: manifest.fetch.commit, revision: manifest.fetch.revision ?? manifest.fetch.commit };
  return { repo: manifest.source.repo, commit: manifest.source.commit, revision: manifest.source.revision ?? manifest.source.commit };
}

async function fetchModel(manifest: ModelManifest, opts: LoadOptions, env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<string> {
  const cfg = opts.hub ? { ...opts.hub, ...(opts.hubEndpoint ? { endpoint: opts.hubEndpoint.replace(/\/+$/, '') } : {}) } : hubConfigFromEnv(env, opts.hubEndpoint ? { endpoint: opts.hubEndpoint } : {});
  const src = fetchSource(manifest);
  const lfsByPath = new Map(manifest.source.files.map((f) => [f.path, f.lfs]));
  const entry: LockEntry = {
    source: 'hub',
    repo: src.repo,
    revision: src.revision,
    commit: src.commit,
    fragment: '',
    files: manifest.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256, lfs: f.lfs ?? lfsByPath.get(f.path) ?? true })),
  };
  log(`fetching ${manifest.id} (${manifest.files.length} files, ${manifest.files.reduce((n, f) => n + f.size, 0)} bytes) from ${cfg.endpoint}/${src.repo}@${src.commit.slice(0, 12)}`);
  const { snapshotDir } = await pullModel(entry, cfg);
  return snapshotDir;
}

/** The unbundled manifest: same files and provenance, marked for fetching at start from `fetch`. */
export function unbundledManifest(manifest: ModelManifest, fetch?: { repo: string; commit: string }): ModelManifest {
  const f = fetch ?? (manifest.source.type === 'hub' && manifest.quantization.format === 'none' ? undefined : null);
  if (f === null) {
    throw new InputError(`model ${manifest.id} was quantized by bake (${manifest.quantization.format}), so its files are not on the Hub at ${manifest.source.repo}`, {
      field: fetchArgName(manifest.id),
      expected: 'a Hub repo and commit that hold the quantized files',
      hint: `publish the quantized files to a Hub repo and pass --build-arg ${fetchArgName(manifest.id)}=<org/name>@<commit sha>, or build with BUNDLE_MODELS=true`,
    });
  }
  return { ...manifest, bundled: false, ...(f ? { fetch: f } : {}) };
}

