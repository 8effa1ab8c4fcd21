// bake: packaged models -> an image value per target (base + one layer per model), daemonless.
// The value is then written by one of the writers: OCI layout, docker-archive, or a registry push.
import { join } from 'node:path';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { appendLayers, dirLayer, pullImage, readOciLayout, scratchImage, type ImageValue, type Layer } from '../image/oci/index.js';
import { modelsDigest } from '../lock/lockfile.js';
import type { LockEntry } from '../lock/types.js';
import { modelsForTarget } from '../recipe/load.js';
import type { Recipe, TargetName } from '../recipe/types.js';
import { InputError } from '../util/errors.js';
import type { PipelineContext } from './context.js';
import type { PreparedModel } from './model.js';

export const MODELS_ROOT = 'app/models';

export interface BakedImage {
  target: TargetName;
  image: ImageValue;
  tags: string[];
  modelsDigest: string;
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
  return pullImage(ref, { insecure: /^(127\.|localhost)/.test(ref) });
}

export function expandTags(templates: string[], vars: { version: string; target: string; models: string }): string[] {
  const out = new Set<string>();
  for (const t of templates) out.add(t.replace(/\{(version|target|models)\}/g, (_, k: 'version' | 'target' | 'models') => vars[k]));
  return [...out];
}

export async function bakeImage(
  ctx: PipelineContext,
  recipe: Recipe,
  target: TargetName,
  prepared: Map<string, PreparedModel>,
  entries: Map<string, LockEntry>,
  opts: { compression?: 'none' | 'gzip'; base?: string } = {},
): Promise<BakedImage> {
  const spec = recipe.targets.find((t) => t.name === target);
  if (!spec) {
    throw new InputError(`recipe ${recipe.name} has no target "${target}"`, { file: recipe.file, field: 'targets', expected: recipe.targets.map((t) => t.name).join(', ') });
  }
  const models = modelsForTarget(recipe, target);
  const base = await loadBase(opts.base ?? spec.base, ctx.root);
  const layers: Layer[] = [];
  const layerCache = join(ctx.store.root, 'layers');
  await mkdir(join(ctx.store.root, 'tmp'), { recursive: true });
  for (const model of models) {
    const p = prepared.get(model.id)!;
    // Each model is its own layer: changing one model leaves the other layers' digests alone.
    // The packaged artifact's digest names the content, so an unchanged model reuses its cached layer blob.
    const dir = await mkdtemp(join(ctx.store.root, 'tmp', 'bake-'));
    try {
      await ctx.store.materialize(p.packaged.digest, dir);
      layers.push(await dirLayer(dir, `${MODELS_ROOT}/${model.id}`, { compression: opts.compression ?? 'none', epoch: ctx.epoch, cacheDir: layerCache, contentKey: p.packaged.digest }));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const digest = modelsDigest(models.map((m) => entries.get(m.id)!));
  const created = new Date(ctx.epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const provenance = Object.fromEntries(
    models.map((m) => {
      const e = entries.get(m.id)!;
      return [`dev.bake.model.${m.id}`, `${e.repo}@${e.commit}`];
    }),
  );
  const annotations: Record<string, string> = {
    'org.opencontainers.image.created': created,
    'org.opencontainers.image.version': recipe.image.version,
    'org.opencontainers.image.title': `${recipe.name} (${target})`,
    'dev.bake.recipe': recipe.name,
    'dev.bake.target': target,
    'dev.bake.models.digest': `sha256:${digest}`,
    ...provenance,
  };
  if (process.env.BAKE_REVISION) annotations['org.opencontainers.image.revision'] = process.env.BAKE_REVISION;
  if (process.env.BAKE_SOURCE) annotations['org.opencontainers.image.source'] = process.env.BAKE_SOURCE;
  const image = appendLayers(base, layers, {
    annotations,
    labels: { ...recipe.image.labels, 'dev.bake.recipe': recipe.name, 'dev.bake.target': target, 'dev.bake.models.digest': `sha256:${digest}` },
    env: [`BAKE_MODELS_DIR=/${MODELS_ROOT}`, ...Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`)],
    cmd: spec.cmd,
    created,
    history: models.map((m) => `bake: model ${m.id} (${m.quantize.format})`),
  });
  const tags = expandTags(recipe.image.tags, { version: recipe.image.version, target, models: digest.slice(0, 12) });
  return { target, image, tags, modelsDigest: digest };
}
