// `bake build` on the engine: one recipe target from docker/<recipe>/Dockerfile, with the bake builder
// image made first when the engine does not have it.
import type Docker from 'dockerode';
import { relative, sep } from 'node:path';
import type { Recipe, TargetName } from '../../recipe/types.js';
import { EngineError, InputError } from '../../util/errors.js';
import { baseArgName, checkTarget, DEFAULT_BAKE_IMAGE } from '../dockerfile/generate.js';
import { contextPathsFor } from '../dockerfile/write.js';
import { packContext } from './context.js';
import { BuildFailedError, buildImage, connectEngine, hasImage, pingEngine, type BuildEvent } from './engine.js';

export interface BuildTargetOptions {
  recipe: Recipe;
  target: TargetName;
  /** Project root: the build context. */
  contextDir: string;
  /** docker/<recipe>/Dockerfile (absolute or relative to contextDir). */
  dockerfile: string;
  /** BUNDLE_MODELS, BASE_IMAGE_<TARGET>, BAKE_IMAGE, HF_ENDPOINT, SOURCE_DATE_EPOCH, BAKE_FETCH_<ID>... */
  buildArgs?: Record<string, string>;
  tag: string;
  /** Extra tags for the same image. */
  tags?: string[];
  /** RUN steps' network: none (default) or host (to reach a Hub on this machine's loopback). */
  network?: 'none' | 'host';
  /** Base image for the bake builder image when it has to be made (default node:20-bookworm-slim). */
  nodeImage?: string;
  noCache?: boolean;
  /** Hub token for the models stages, passed only as the BuildKit secret `hf_token`. */
  hfToken?: string;
  onEvent?: (e: BuildEvent) => void;
  docker?: Docker;
  signal?: AbortSignal;
}

const BAKE_CONTEXT = ['package.json', 'package-lock.json', '.npmrc', 'node_modules', 'bin', 'schema', 'src', 'docker/bake'];

function rel(root: string, p: string): string {
  const r = p.startsWith('/') ? relative(root, p) : p;
  return r.split(sep).join('/');
}

/** Builds the bake builder image (docker/bake.Dockerfile) unless the engine already has `tag`. */
export async function ensureBakeImage(opts: { docker: Docker; root: string; tag?: string; nodeImage?: string; rebuild?: boolean; onEvent?: (e: BuildEvent) => void }): Promise<{ imageId?: string; built: boolean }> {
  const tag = opts.tag ?? DEFAULT_BAKE_IMAGE;
  if (!opts.rebuild && (await hasImage(opts.docker, tag))) return { built: false };
  const nodeImage = opts.nodeImage ?? 'node:20-bookworm-slim';
  const context = packContext({ root: opts.root, include: [...BAKE_CONTEXT, 'docker/bake.Dockerfile'], ignoreFile: 'docker/bake.Dockerfile.dockerignore' });
  try {
    const { imageId } = await buildImage(opts.docker, { context, dockerfile: 'docker/bake.Dockerfile', tags: [tag], buildArgs: { NODE_IMAGE: nodeImage }, network: 'none', onEvent: opts.onEvent });
    return { imageId, built: true };
  } catch (err) {
    throw await explainMissingBase(opts.docker, err, [{ ref: nodeImage, arg: 'NODE_IMAGE', what: 'the bake builder image' }]);
  }
}

/** Turns "could not pull" failures into an error naming the missing base image and how to provide it. */
async function explainMissingBase(docker: Docker, err: unknown, bases: { ref: string; arg: string; what: string }[]): Promise<unknown> {
  if (!(err instanceof EngineError)) return err;
  for (const b of bases) {
    if (await hasImage(docker, b.ref)) continue;
    return new EngineError(`base image ${b.ref} for ${b.what} is not in the engine's image store and could not be pulled`, {
      field: b.arg,
      expected: 'an image the engine has or can pull',
      hint: `pull or load it first (\`docker pull ${b.ref}\`, \`docker load\`), or build on another base with --build-arg ${b.arg}=<image> (test/support/docker-env.sh makes local ones)`,
      cause: err,
    });
  }
  return err;
}

export async function buildTarget(opts: BuildTargetOptions): Promise<{ imageId: string }> {
  const spec = checkTarget(opts.recipe, opts.target);
  const args: Record<string, string> = { SOURCE_DATE_EPOCH: '0', ...opts.buildArgs };
  if (args.BUNDLE_MODELS !== undefined && args.BUNDLE_MODELS !== 'true' && args.BUNDLE_MODELS !== 'false') {
    throw new InputError(`BUNDLE_MODELS is ${JSON.stringify(args.BUNDLE_MODELS)}`, { field: 'BUNDLE_MODELS', expected: 'true or false' });
  }
  const docker = opts.docker ?? connectEngine();
  await pingEngine(docker);
  const bakeImage = args.BAKE_IMAGE ?? DEFAULT_BAKE_IMAGE;
  await ensureBakeImage({ docker, root: opts.contextDir, tag: bakeImage, nodeImage: opts.nodeImage, onEvent: opts.onEvent });

  const dockerfile = rel(opts.contextDir, opts.dockerfile);
  const context = packContext({ root: opts.contextDir, include: [...contextPathsFor(opts.recipe, opts.contextDir), dockerfile] });
  const baseArg = baseArgName(opts.target);
  const base = args[baseArg] ?? spec.base;
  try {
    const { imageId } = await buildImage(docker, {
      context,
      dockerfile,
      target: opts.target,
      tags: [opts.tag, ...(opts.tags ?? [])],
      buildArgs: args,
      network: opts.network ?? 'none',
      noCache: opts.noCache,
      secrets: opts.hfToken ? { hf_token: Buffer.from(opts.hfToken) } : {},
      onEvent: opts.onEvent,
      signal: opts.signal,
    });
    return { imageId };
  } catch (err) {
    throw await explainMissingBase(docker, err, [
      { ref: base, arg: baseArg, what: `target ${opts.target}` },
      { ref: bakeImage, arg: 'BAKE_IMAGE', what: 'the models stages' },
    ]);
  }
}

export { BuildFailedError };
