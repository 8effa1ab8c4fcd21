// `bake build` without --output: writes docker/<recipe>/Dockerfile and docker-bake.hcl, then builds
// each target through the Docker engine (BuildKit), streaming its steps as bake events.
import { resolve } from 'node:path';
import { buildRecipe } from '../image/docker/index.js';
import { writeBuildFiles } from '../image/dockerfile/write.js';
import { frozenEntries, lockfilePath, modelsDigest, readLockfile } from '../lock/lockfile.js';
import { modelsForTarget } from '../recipe/load.js';
import type { Recipe, TargetName } from '../recipe/types.js';
import { hubConfigFromEnv } from '../hub/config.js';
import { sourceDateEpoch } from '../pipeline/context.js';
import type { RunInput } from './commands.js';

export async function buildWithEngine(input: RunInput, recipe: Recipe, targets: TargetName[]): Promise<{ value: unknown; text: string }> {
  const root = resolve(input.globals.project);
  if (input.opts.dockerfileOnly) {
    // For plain `docker build` / `docker buildx bake` users and for keeping docker/ current in the repo.
    const files = await writeBuildFiles({ root, recipe });
    return { value: { recipe: recipe.name, dockerfile: files.dockerfile, bakeHcl: files.bakeHcl }, text: `wrote ${files.dockerfile}\nwrote ${files.bakeHcl}` };
  }
  const lock = await readLockfile(lockfilePath(root));
  const entries = frozenEntries(recipe, lock, lockfilePath(root));
  const digests: Partial<Record<TargetName, string>> = {};
  for (const t of targets) digests[t] = modelsDigest(modelsForTarget(recipe, t).map((m) => entries.get(m.id)!)).slice(0, 12);
  const hub = hubConfigFromEnv(process.env);
  const buildArgs: Record<string, string> = {
    BUNDLE_MODELS: String(input.opts.bundleModels ?? 'true'),
    SOURCE_DATE_EPOCH: String(sourceDateEpoch()),
  };
  // The endpoint is not a secret; the token only ever travels as the BuildKit secret `hf_token`.
  if (process.env.HF_ENDPOINT) buildArgs.HF_ENDPOINT = hub.endpoint;
  const result = await buildRecipe({
    root,
    recipe,
    targets,
    buildArgs,
    base: input.opts.base as string | undefined,
    network: (input.opts.network as 'none' | 'host' | undefined) ?? 'none',
    hfToken: hub.token,
    noCache: Boolean(input.opts.force),
    modelsDigest: digests,
    onEvent: (target, e) => {
      if (e.type === 'step' && (e.step.completed || e.step.cached || e.step.error)) {
        input.render.event({ type: 'log', step: 'bake', message: `[${target}] ${e.step.cached ? 'CACHED ' : ''}${e.step.name}${e.step.error ? ` ERROR ${e.step.error}` : ''}` });
      } else if (e.type === 'log') {
        for (const line of e.text.split('\n').filter((l) => l.trim())) input.render.event({ type: 'log', step: 'bake', message: `[${target}] ${line}` });
      }
    },
  });
  const text = [`wrote ${result.dockerfile}`, `wrote ${result.bakeHcl}`, ...result.images.map((i) => `${i.target}: ${i.imageId} ${i.tags.join(', ')}`)].join('\n');
  return { value: { recipe: recipe.name, dockerfile: result.dockerfile, bakeHcl: result.bakeHcl, images: result.images }, text };
}
