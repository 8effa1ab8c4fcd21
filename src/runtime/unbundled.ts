// Images built without model bytes (BUNDLE_MODELS=false, `bake build --bundle-models false`) hold each
// model's manifest only, naming the layer `bake push` pushed for that model (its digest and repository).
// At start the runtime gets the *quantized* model, into a cache folder a volume can keep
// (BAKE_MODELS_CACHE):
//   1. from the cache, when a previous start left it there (files checked against the manifest);
//   2. from the registry: a plain OCI blob GET of the model's layer, verified by digest while it streams,
//      its app/models/<id>/ files extracted;
//   3. failing that, from the Hub: the locked source files, quantized at start by the pipeline's own
//      fetch and quantize steps (src/pipeline/chain.ts), the seed's slow path.
// Whichever path, the files must be the manifest's to the byte (sha256), so what serves is what bake
// verified when it built the bundled image. Each start logs the path it took and what it cost.
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { createWriteStream } from 'node:fs';
import { dirLayer } from '../image/oci/layer.js';
import { RegistryClient, type RegistryOptions } from '../image/registry/client.js';
import { BakeError, InputError, IntegrityError, NetworkError } from '../util/errors.js';
import { safeJoin } from '../util/fs.js';
import type { ModelManifest } from './manifest.js';

export const MODELS_CACHE_ENV = 'BAKE_MODELS_CACHE';
/** Where fetched models are kept when BAKE_MODELS_CACHE is unset (mount a volume here to keep them). */
export const DEFAULT_MODELS_CACHE = '/var/cache/bake/models';

/** The layer an image gives model `id` (app/models/<id>/, uncompressed, times from SOURCE_DATE_EPOCH): what push pushes. */
export async function modelLayerOf(dir: string, id: string, epoch: number): Promise<{ digest: string; size: number }> {
  const l = await dirLayer(dir, `app/models/${id}`, { compression: 'none', epoch });
  return { digest: l.digest, size: l.size };
}

/** The manifest an image without model bytes holds: the bundled one, marked unbundled, naming its layer. */
export function unbundledManifest(manifest: ModelManifest, layer: { digest: string; size: number; repository: string }): ModelManifest {
  return { ...manifest, bundled: false, layer };
}

export interface FetchOptions {
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  onProgress?: (what: string) => void;
  /** Registry credentials and transport (tests); default: BAKE_REGISTRY_USERNAME / _PASSWORD, anonymous otherwise. */
  registry?: RegistryOptions;
  /** Hub settings for the quantize-at-start path (default: HF_ENDPOINT, HF_TOKEN...). */
  hub?: import('../hub/config.js').HubConfig;
}

export interface Fetched {
  dir: string;
  source: 'cache' | 'registry' | 'quantized';
  note: string;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** Files of the manifest under `dir`, each with its size and sha256; false when any differs or is missing. */
async function complete(dir: string, manifest: ModelManifest, check: (dir: string, m: ModelManifest) => Promise<void>): Promise<boolean> {
  if (!(await stat(dir).then((s) => s.isDirectory(), () => false))) return false;
  try {
    await check(dir, manifest);
    return true;
  } catch {
    return false;
  }
}

/**
 * The model's quantized files in the cache folder, by whichever path works first (cache, registry, quantize
 * at start). `check` is the runtime's file check (sizes and sha256 against the manifest).
 */
export async function fetchUnbundled(manifest: ModelManifest, opts: FetchOptions, check: (dir: string, m: ModelManifest) => Promise<void>): Promise<Fetched> {
  const cache = opts.env[MODELS_CACHE_ENV] || DEFAULT_MODELS_CACHE;
  // Keyed by the model's content (its layer digest, else its files), so two images never share a wrong folder.
  const key = manifest.layer?.digest.slice('sha256:'.length) ?? createHash('sha256').update(JSON.stringify(manifest.files)).digest('hex');
  const dir = join(cache, manifest.id, key.slice(0, 32));
  if (await complete(dir, manifest, check)) return { dir, source: 'cache', note: `from the cache ${dir}` };
  await rm(dir, { recursive: true, force: true });
  await mkdir(dirname(dir), { recursive: true });
  const failures: string[] = [];
  if (manifest.layer) {
    const repository = opts.env.BAKE_MODELS_REGISTRY?.trim() || manifest.layer.repository;
    opts.onProgress?.(`fetching its layer from ${repository}`);
    const t0 = performance.now();
    try {
      await fromRegistry(manifest, repository, dir, opts);
      await check(dir, manifest);
      const ms = Math.round(performance.now() - t0);
      return { dir, source: 'registry', note: `pulled the quantized layer ${manifest.layer.digest.slice(0, 19)} (${mb(manifest.layer.size)}) from ${repository} in ${ms} ms into ${dir}` };
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      const why = (err as Error).message;
      failures.push(`registry ${repository}: ${why}`);
      opts.log(`${manifest.id}: the registry did not give its quantized layer (${why}); fetching the source from the Hub and quantizing at start`);
    }
  } else {
    failures.push('the manifest names no layer in a registry');
  }
  if (!manifest.quantization.spec || manifest.source.type !== 'hub') {
    throw new NetworkError(`model ${manifest.id} is not in this image and could not be fetched: ${failures.join('; ')}`, {
      hint: manifest.source.type !== 'hub'
        ? 'it came from a local folder, so only the registry can give it: push the bundled image (`bake push`) to the repository the image names, or set BAKE_MODELS_REGISTRY'
        : 'rebuild the image with this bake version (its manifest lacks the quantize spec), or push the bundled image (`bake push`)',
    });
  }
  opts.onProgress?.('quantizing at start');
  const t0 = performance.now();
  let cost: { fetchMs: number; quantizeMs: number };
  try {
    cost = await quantizeAtStart(manifest, dir, cache, opts);
  } catch (err) {
    if (!(err instanceof NetworkError)) throw err;
    throw new NetworkError(`model ${manifest.id} is not in this image and could not be fetched: ${failures.join('; ')}; Hub: ${err.message}`, {
      hint: 'give the container a route to the registry the image names (or set BAKE_MODELS_REGISTRY to a mirror), or to the Hub (HF_ENDPOINT, HF_TOKEN); mount a volume at BAKE_MODELS_CACHE to keep what it fetched', cause: err,
    });
  }
  try {
    await check(dir, manifest);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    if (err instanceof IntegrityError) {
      throw new IntegrityError(err.path, err.expectedDigest, err.actualDigest, { hint: `quantizing ${manifest.id} at start did not give the bytes bake verified at build time (another onnxruntime or bake version?); push the bundled image so the runtime pulls the verified layer` });
    }
    throw err;
  }
  const ms = Math.round(performance.now() - t0);
  return { dir, source: 'quantized', note: `quantized at start from ${manifest.source.repo}@${manifest.source.commit.slice(0, 12)} in ${ms} ms (fetch ${cost.fetchMs} ms, quantize ${cost.quantizeMs} ms) into ${dir}` };
}

function registryOptions(env: NodeJS.ProcessEnv, given?: RegistryOptions): RegistryOptions {
  if (given) return given;
  const user = env.BAKE_REGISTRY_USERNAME, password = env.BAKE_REGISTRY_PASSWORD;
  return {
    ...(user && password ? { auth: { username: user, password } } : {}),
    ...(env.BAKE_REGISTRY_INSECURE ? { insecure: /^(1|true|yes)$/i.test(env.BAKE_REGISTRY_INSECURE) } : {}),
    retries: 2,
    retryDelayMs: 200,
  };
}

/** GET /v2/<repo>/blobs/<digest>: the layer tar, hashed as it streams, its app/models/<id>/ files written under `dir`. */
async function fromRegistry(manifest: ModelManifest, repository: string, dir: string, opts: FetchOptions): Promise<void> {
  const layer = manifest.layer!;
  const slash = repository.indexOf('/');
  const host = repository.slice(0, slash), repo = repository.slice(slash + 1);
  const client = new RegistryClient(host, registryOptions(opts.env, opts.registry));
  const res = await client.request('GET', `/v2/${repo}/blobs/${layer.digest}`, { ok: [200], what: `fetching the layer of ${manifest.id}` });
  if (!res.body) throw new IntegrityError(`layer ${layer.digest}`, `${layer.size} bytes`, 'an empty answer');
  const tmp = `${dir}.part-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const prefix = `app/models/${manifest.id}/`;
  const hash = createHash('sha256');
  let bytes = 0;
  const extract = tar.extract();
  extract.on('entry', (header, body, next) => {
    const name = header.name.replace(/^\.?\//, '');
    const rel = name.startsWith(prefix) ? name.slice(prefix.length).replace(/\/$/, '') : undefined;
    const target = rel ? safeJoin(tmp, rel) : undefined;
    const done = (err?: unknown) => (err ? next(err as Error) : next());
    if (header.type === 'file' && rel && target) {
      mkdir(dirname(target), { recursive: true }).then(() => pipeline(body, createWriteStream(target, { mode: 0o644 }))).then(() => done(), done);
    } else if (header.type === 'file' || header.type === 'directory') {
      // Folders are made as files need them; anything outside app/models/<id>/ is not this model's.
      body.resume();
      body.on('end', () => done());
    } else {
      body.resume();
      done(new IntegrityError(`layer ${layer.digest}`, 'files and folders only', `a ${header.type} entry ${header.name}`));
    }
  });
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      if (bytes > layer.size) return cb(new IntegrityError(`layer ${layer.digest}`, `${layer.size} bytes`, `more than ${layer.size} bytes`));
      cb(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), tap, extract);
    const got = `sha256:${hash.digest('hex')}`;
    if (got !== layer.digest || bytes !== layer.size) throw new IntegrityError(`layer ${layer.digest} from ${repository}`, `${layer.digest} (${layer.size} bytes)`, `${got} (${bytes} bytes)`);
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * The seed's slow path, with bake's own steps: the locked source files from the Hub (verified), then the
 * quantize step as the recipe declared it (the manifest carries its spec), into `dir`.
 */
async function quantizeAtStart(manifest: ModelManifest, dir: string, cache: string, opts: FetchOptions): Promise<{ fetchMs: number; quantizeMs: number }> {
  const [{ chainFor }, { runChain }, { Store }, { hubConfigFromEnv }, { packageVersion }] = await Promise.all([
    import('../pipeline/chain.js'), import('../pipeline/run.js'), import('../store/store.js'), import('../hub/config.js'), import('../util/packages.js'),
  ]);
  const spec = manifest.quantization.spec as unknown as import('../recipe/types.js').QuantSpec;
  const calibration = (spec as { calibration?: { texts?: unknown; data?: unknown } }).calibration;
  if (calibration?.texts || calibration?.data) {
    throw new InputError(`model ${manifest.id} was calibrated on files of its recipe, which the image does not hold: it cannot be quantized at start`, {
      field: 'quantize.calibration', hint: 'push the bundled image (`bake push`) so the runtime pulls the quantized layer',
    });
  }
  const entry = {
    source: 'hub' as const, repo: manifest.source.repo, revision: manifest.source.revision ?? manifest.source.commit, commit: manifest.source.commit, fragment: '',
    files: manifest.source.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256, lfs: f.lfs ?? true })),
  };
  const model = {
    id: manifest.id, repo: entry.repo, revision: entry.revision, files: entry.files.map((f) => f.path), allow_pickle: [], task: manifest.task,
    quantize: spec, verify: { skip: true }, ...(manifest.embedding && { embedding: manifest.embedding }), ...(manifest.rerank && { rerank: manifest.rerank }),
  };
  const recipeFile = join(cache, 'recipe.yaml');
  const recipe = { name: 'runtime', file: recipeFile, models: [model], targets: [], image: { name: 'runtime', version: '0', tags: [], labels: {} } };
  const env = opts.env;
  const hub = opts.hub ?? hubConfigFromEnv(env, env.HF_HUB_CACHE || env.HF_HOME ? {} : { cacheDir: join(cache, 'hf') });
  let ort = 'onnxruntime-node@unknown';
  try {
    ort = `onnxruntime-node@${packageVersion('onnxruntime-node')}`;
  } catch {
    // the version only names cache keys of the runtime's own store
  }
  const steps: Record<string, number> = {};
  const ctx = {
    store: new Store(join(cache, 'store')), hub, lock: { version: 1, models: {} } as never, root: cache, epoch: 0, env,
    toolchain: { onnxruntime: ort, 'llama.cpp': 'none', 'gguf-kernels': 'runtime' },
    onEvent: (e: import('../pipeline/events.js').PipelineEvent) => {
      if (e.type === 'step' && e.status === 'done' && e.ms !== undefined) steps[e.step] = e.ms;
      if (e.type === 'step' && e.status === 'running') opts.onProgress?.(`${e.step === 'fetch' ? 'fetching the source from the Hub' : 'quantizing'} (at start)`);
    },
  };
  opts.log(`${manifest.id}: fetching ${manifest.source.repo}@${manifest.source.commit.slice(0, 12)} (${entry.files.length} files, ${mb(entry.files.reduce((n, f) => n + f.size, 0))}) from ${hub.endpoint} to quantize at start`);
  const chain = await chainFor({ ctx: ctx as never, recipe: recipe as never, model: model as never, entry });
  const run = await runChain(ctx as never, chain, { until: 'quantize' });
  const quantized = run.quantized;
  if (!quantized) throw new BakeError(`model ${manifest.id}: the quantize step gave no artifact`, 'failure');
  const tmp = `${dir}.part-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await ctx.store.materialize(quantized.digest, tmp);
  // The package step names a GGUF file for the model; the quantize step's is named for no model.
  const gguf = manifest.files.filter((f) => f.path.endsWith('.gguf'));
  const made = quantized.artifact.files.filter((f) => f.path.endsWith('.gguf'));
  if (gguf.length === 1 && made.length === 1 && gguf[0]!.path !== made[0]!.path) await rename(join(tmp, made[0]!.path), join(tmp, gguf[0]!.path));
  await rename(tmp, dir);
  return { fetchMs: steps.fetch ?? 0, quantizeMs: (steps.convert ?? 0) + (steps.quantize ?? 0) };
}
