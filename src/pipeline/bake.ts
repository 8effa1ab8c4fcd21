// bake: packaged models -> an image value per target: the base, bake's runtime app as one layer (for a
// target with a server), one layer per model, and the runtime contract's entrypoint, environment,
// port and health check in the config. The value is then written by one of the writers (OCI layout,
// docker-archive, registry push); it is the same image the Dockerfile builds through an engine.
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { appendLayers, dirLayer, expandTags, modelLayerAnnotations, pullImage, readOciLayout, scratchImage, withLayerAnnotations, type ImageValue, type Layer } from '../image/oci/index.js';
import { writeRuntimeApp } from '../image/runtime-app.js';
import { modelsDigest } from '../lock/lockfile.js';
import type { LockEntry } from '../lock/types.js';
import { modelsForTarget } from '../recipe/targets.js';
import type { Recipe, TargetSpec } from '../recipe/types.js';
import { MODELS_DIR, RUNTIME_DIR, runtimeImage, type RuntimePart } from '../runtime/contract.js';
import { MANIFEST_FILE, readManifest } from '../runtime/manifest.js';
import { unbundledManifest } from '../runtime/unbundled.js';
import { writeFileAtomic } from '../util/fs.js';
import { prettyJson } from '../util/json.js';
import { epochToRfc3339 } from '../image/oci/image.js';
import type { PipelineContext } from './context.js';
import type { StepResult } from './step.js';

export interface ImageLayerInfo {
  /** `base`, `runtime`, `model <id>`, or `manifest <id>` (an image without model bytes). */
  what: string;
  digest: string;
  size: number;
  /** Without model bytes: the model's own layer, which the runtime pulls at start. */
  modelLayer?: { digest: string; size: number; repository: string };
}

export interface BakedImage {
  target: TargetSpec;
  image: ImageValue;
  tags: string[];
  modelsDigest: string;
  layers: ImageLayerInfo[];
}

/** Resolves a target's base: `scratch`, `oci:<dir>[:tag]` (a local layout) or a registry reference. */
export async function loadBase(ref: string, root: string): Promise<ImageValue> {
  if (ref === 'scratch') return scratchImage();
  if (ref.startsWith('oci:')) {
    const rest = ref.slice(4);
    const colon = rest.lastIndexOf(':');
    const [dir, tag] = colon > 0 && !rest.slice(colon).includes('/') ? [rest.slice(0, colon), rest.slice(colon + 1)] : [rest, undefined];
    return readOciLayout(join(root, dir), tag);
  }
  return pullImage(ref);
}

/**
 * The runtime app as a layer at RUNTIME_DIR. Kept in the store under the digest of what it holds, so
 * an unchanged runtime is packed once.
 */
async function runtimeLayer(ctx: PipelineContext, parts: RuntimePart[], compression: 'none' | 'gzip'): Promise<Layer> {
  const scratch = join(ctx.store.root, 'tmp', `runtime-${process.pid}-${Date.now()}`);
  await mkdir(scratch, { recursive: true });
  try {
    const digest = await writeRuntimeApp(scratch, parts);
    const keep = join(ctx.store.root, 'runtime', digest);
    if (!(await stat(keep).catch(() => undefined))) {
      await mkdir(join(ctx.store.root, 'runtime'), { recursive: true });
      await rm(keep, { recursive: true, force: true });
      await rename(scratch, keep).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err; // another process won the race
      });
    }
    return await dirLayer(keep, RUNTIME_DIR.slice(1), { compression, epoch: ctx.epoch, cacheDir: join(ctx.store.root, 'layers'), contentKey: `runtime:${digest}` });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

export async function assembleImage(
  ctx: PipelineContext,
  recipe: Recipe,
  target: TargetSpec,
  packaged: Map<string, StepResult>,
  entries: Map<string, LockEntry>,
  opts: { compression?: 'none' | 'gzip'; base?: string; annotations?: Record<string, string>; bundleModels?: boolean; modelsRepository?: string } = {},
): Promise<BakedImage> {
  const compression = opts.compression ?? 'none';
  const models = modelsForTarget(recipe, target);
  const base = await loadBase(opts.base ?? target.base, ctx.root);
  const runtime = runtimeImage(target);
  const layers: Layer[] = [];
  // The base's layers first, so the layer list is the whole image's.
  const info: ImageLayerInfo[] = base.layers.map((l) => ({ what: 'base', digest: l.digest, size: l.size }));
  const history: string[] = [];
  if (runtime) {
    const l = await runtimeLayer(ctx, runtime.parts, compression);
    layers.push(l);
    info.push({ what: 'runtime', digest: l.digest, size: l.size });
    history.push(`bake: runtime app for ${target.server.kind} (${runtime.parts.join(', ')})`);
  }
  await mkdir(join(ctx.store.root, 'tmp'), { recursive: true });
  const layerAnnotations: Record<string, string> = {};
  for (const model of models) {
    const p = packaged.get(model.id)!;
    const e = entries.get(model.id)!;
    // Each model is its own layer: changing one model leaves the other layers' digests alone.
    // The packaged artifact's digest names the content, so an unchanged model reuses its cached layer blob.
    const dir = join(ctx.store.root, 'tmp', `bake-${model.id}-${process.pid}-${Date.now()}`);
    try {
      await ctx.store.materialize(p.digest, dir);
      // Always uncompressed for the model's own layer when unbundled: the runtime pulls that exact blob.
      const full = await dirLayer(dir, `${MODELS_DIR.slice(1)}/${model.id}`, { compression: opts.bundleModels === false ? 'none' : compression, epoch: ctx.epoch, cacheDir: join(ctx.store.root, 'layers'), contentKey: p.digest });
      const annotations = modelLayerAnnotations({ id: model.id, repo: e.repo, commit: e.commit, format: model.quantize.format });
      if (opts.bundleModels === false) {
        // The image keeps the manifest only; it names the model's layer and where `bake push` put it.
        const repository = opts.modelsRepository ?? recipe.image.name;
        const manifestOnly = join(dir + '-manifest');
        const un = unbundledManifest(await readManifest(join(dir, MANIFEST_FILE)), { digest: full.digest, size: full.size, repository });
        await writeFileAtomic(join(manifestOnly, MANIFEST_FILE), prettyJson(un));
        try {
          // Kept in the layer cache: the folder is gone by the time a writer reads the layer.
          const l = await dirLayer(manifestOnly, `${MODELS_DIR.slice(1)}/${model.id}`, { compression, epoch: ctx.epoch, cacheDir: join(ctx.store.root, 'layers') });
          layers.push(withLayerAnnotations(l, { ...annotations, 'dev.bake.model.bundled': 'false' }));
          info.push({ what: `manifest ${model.id}`, digest: l.digest, size: l.size, modelLayer: { digest: full.digest, size: full.size, repository } });
          history.push(`bake: model ${model.id} (${model.quantize.format}), not bundled: pulled at start from ${repository}`);
          layerAnnotations[`dev.bake.model.${model.id}.layer`] = `${repository}@${full.digest}`;
        } finally {
          await rm(manifestOnly, { recursive: true, force: true });
        }
      } else {
        layers.push(withLayerAnnotations(full, annotations));
        info.push({ what: `model ${model.id}`, digest: full.digest, size: full.size });
        history.push(`bake: model ${model.id} (${model.quantize.format})`);
        layerAnnotations[`dev.bake.model.${model.id}.layer`] = full.digest;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const digest = modelsDigest(models.map((m) => entries.get(m.id)!));
  const created = epochToRfc3339(ctx.epoch);
  const provenance = Object.fromEntries(models.map((m) => {
    const e = entries.get(m.id)!;
    return [`dev.bake.model.${m.id}`, `${e.repo}@${e.commit}`];
  }));
  const annotations: Record<string, string> = {
    'org.opencontainers.image.created': created,
    'org.opencontainers.image.version': recipe.image.version,
    'org.opencontainers.image.title': `${recipe.name} (${target.name})`,
    'dev.bake.recipe': recipe.name,
    'dev.bake.target': target.name,
    'dev.bake.server': target.server.kind,
    'dev.bake.models.digest': `sha256:${digest}`,
    ...provenance,
    // Each model's layer (pushed with the image; a lean image names the repository it lives in).
    ...layerAnnotations,
    // The gate summary (src/report/model.ts gateAnnotations): reproducible values only.
    ...opts.annotations,
  };
  if (ctx.env.BAKE_REVISION) annotations['org.opencontainers.image.revision'] = ctx.env.BAKE_REVISION;
  if (ctx.env.BAKE_SOURCE) annotations['org.opencontainers.image.source'] = ctx.env.BAKE_SOURCE;
  const env = runtime ? Object.entries(runtime.env).map(([k, v]) => `${k}=${v}`) : [`BAKE_MODELS_DIR=${MODELS_DIR}`, ...Object.entries(target.env).map(([k, v]) => `${k}=${v}`)];
  const image = appendLayers(base, layers, {
    annotations,
    labels: { ...recipe.image.labels, 'dev.bake.bundled': String(opts.bundleModels !== false), 'dev.bake.recipe': recipe.name, 'dev.bake.target': target.name, 'dev.bake.server': target.server.kind, 'dev.bake.models': models.map((m) => m.id).join(','), 'dev.bake.models.digest': `sha256:${digest}` },
    env,
    ...(runtime ? { entrypoint: runtime.entrypoint, cmd: runtime.cmd, exposedPorts: runtime.exposedPort ? [runtime.exposedPort] : [], healthcheck: runtime.healthcheck } : {}),
    created,
    history,
  });
  const tags = expandTags(recipe.image.tags, { version: recipe.image.version, target: target.name, modelsDigest: digest });
  return { target, image, tags, modelsDigest: digest, layers: info };
}
