// What a serving app calls at start: find /app/models/<id>, check every file against its manifest, or
// (images built without model bytes) get the quantized model first: src/runtime/unbundled.ts.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { HubConfig } from '../hub/config.js';
import type { RegistryOptions } from '../image/registry/client.js';
import { sha256File } from '../util/digest.js';
import { InputError, IntegrityError } from '../util/errors.js';
import { safeJoin } from '../util/fs.js';
import { MANIFEST_FILE, readManifest, type ModelManifest } from './manifest.js';
import { fetchUnbundled } from './unbundled.js';

export const DEFAULT_MODELS_ROOT = '/app/models';

export interface LoadOptions {
  /** Folder holding <id>/manifest.json (default BAKE_MODELS_DIR, else /app/models). */
  root?: string;
  /** Models to load (default every folder under root that has a manifest). */
  ids?: string[];
  /** Hub for unbundled models quantized at start (default: HF_ENDPOINT, HF_TOKEN...). */
  hub?: HubConfig;
  /** Registry transport and credentials for unbundled models (default: BAKE_REGISTRY_USERNAME / _PASSWORD). */
  registry?: RegistryOptions;
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
  source: 'image' | 'registry' | 'quantized' | 'cache';
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
    let source: LoadedModel['source'] = 'image';
    let note: string | undefined;
    if (manifest.bundled === false) {
      const f = await fetchUnbundled(manifest, { env, log, onProgress: (what) => opts.onProgress?.(id, what), registry: opts.registry, hub: opts.hub }, (d, m) => checkFiles(d, m, 'sha256'));
      ({ dir, source, note } = f);
    } else {
      opts.onProgress?.(id, 'checking');
      await checkFiles(dir, manifest, opts.check ?? 'sha256');
    }
    const ms = Math.round(performance.now() - t0);
    const fetched = source !== 'image';
    if (opts.announce !== false) log(`pre-quantized ${id} loaded in ${ms} ms${note ? ` (${note})` : ''}`);
    out.push({ id, dir, manifest, ms, fetched, source, ...(note ? { note } : {}) });
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
      throw new IntegrityError(path, `a file of ${f.size} bytes`, 'no file', { hint: `the model folder of ${manifest.id} is incomplete; rebuild the image, or for unbundled images clear the models cache volume (BAKE_MODELS_CACHE)` });
    }
    if (size !== f.size) throw new IntegrityError(path, `${f.size} bytes`, `${size} bytes`);
    if (check === 'sha256') {
      const { sha256 } = await sha256File(path);
      if (sha256 !== f.sha256) throw new IntegrityError(path, `sha256 ${f.sha256}`, `sha256 ${sha256}`);
    }
  }
}
