// `bake build` on the engine: one recipe target from docker/<recipe>/Dockerfile, with the bake builder
// image made first when the engine does not have it.
import type Docker from 'dockerode';
import { createHash } from 'node:crypto';
import { lstat, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Recipe, TargetName } from '../../recipe/types.js';
import { EngineError, InputError } from '../../util/errors.js';
import { targetOf } from '../../recipe/targets.js';
import { baseArgName, DEFAULT_BAKE_IMAGE } from '../dockerfile/generate.js';
import { contextPathsFor, writeBuildFiles } from '../dockerfile/write.js';
import { imageTags } from '../dockerfile/bakehcl.js';
import { listContext, packContext } from './context.js';
import { BuildFailedError, buildImage, connectEngine, hasImage, inspectImage, pingEngine, type BuildEvent } from './engine.js';

export interface BuildTargetOptions {
  recipe: Recipe;
  target: TargetName;
  /** Project root: the build context. */
  contextDir: string;
  /** docker/<recipe>/Dockerfile (absolute or relative to contextDir). */
  dockerfile: string;
  /** BUNDLE_MODELS, BASE_IMAGE_<TARGET>, BAKE_IMAGE, HF_ENDPOINT, SOURCE_DATE_EPOCH, BAKE_MODELS_REPOSITORY... */
  buildArgs?: Record<string, string>;
  tag: string;
  /** Extra tags for the same image. */
  tags?: string[];
  /** RUN steps' network: none (default) or host (to reach a Hub on this machine's loopback). */
  network?: 'none' | 'host';
  /** Base image for the bake builder image when it has to be made (default $BAKE_NODE_IMAGE, else node:20-bookworm-slim). */
  nodeImage?: string;
  noCache?: boolean;
  /** Hub token for the models stages, passed only as the BuildKit secret `hf_token`. */
  hfToken?: string;
  /** false: use BAKE_IMAGE as the engine has it (no rebuild when bake's sources changed). */
  ensureBuilder?: boolean;
  onEvent?: (e: BuildEvent) => void;
  docker?: Docker;
  signal?: AbortSignal;
}

/** bake's own install folder (src/ or dist/ is two levels below): the bake builder image's context. */
export const BAKE_ROOT = fileURLToPath(new URL('../../..', import.meta.url));

const BAKE_CONTEXT = ['package.json', 'package-lock.json', '.npmrc', 'node_modules', 'bin', 'schema', 'src', 'docker/bake'];

function rel(root: string, p: string): string {
  const r = p.startsWith('/') ? relative(root, p) : p;
  return r.split(sep).join('/');
}

/** Digest of bake's own sources (not node_modules: package-lock.json stands for it). */
export async function bakeSourceDigest(root = BAKE_ROOT): Promise<string> {
  const hash = createHash('sha256');
  const files = (await listContext({ root, include: BAKE_CONTEXT.filter((p) => p !== 'node_modules').concat('docker/bake.Dockerfile'), ignoreFile: 'docker/bake.Dockerfile.dockerignore' })).sort();
  for (const rel of files) {
    const st = await lstat(join(root, rel));
    if (!st.isFile()) continue;
    hash.update(`${rel}\0${st.size}\0`).update(await readFile(join(root, rel)));
  }
  return hash.digest('hex');
}

/**
 * Builds the bake builder image (docker/bake.Dockerfile) unless the engine has `tag` built from the
 * same sources (label dev.bake.source), so a changed bake is never run from a stale builder.
 */
export async function ensureBakeImage(opts: { docker: Docker; root?: string; tag?: string; nodeImage?: string; rebuild?: boolean; onEvent?: (e: BuildEvent) => void }): Promise<{ imageId?: string; built: boolean }> {
  const tag = opts.tag ?? DEFAULT_BAKE_IMAGE;
  const root = opts.root ?? BAKE_ROOT;
  const source = await bakeSourceDigest(root);
  const have = await inspectImage(opts.docker, tag);
  if (!opts.rebuild && have && (have.labels['dev.bake.source'] === source || !have.labels['dev.bake.source'])) return { built: false };
  const nodeImage = opts.nodeImage ?? process.env.BAKE_NODE_IMAGE ?? 'node:20-bookworm-slim';
  await ensureBaseImage(opts.docker, nodeImage, 'NODE_IMAGE', 'the bake builder image');
  const context = packContext({ root, include: [...BAKE_CONTEXT, 'docker/bake.Dockerfile'], ignoreFile: 'docker/bake.Dockerfile.dockerignore' });
  try {
    const { imageId } = await buildImage(opts.docker, { context, dockerfile: 'docker/bake.Dockerfile', tags: [tag], buildArgs: { NODE_IMAGE: nodeImage }, labels: { 'dev.bake.source': source }, network: 'none', onEvent: opts.onEvent });
    return { imageId, built: true };
  } catch (err) {
    throw await explainMissingBase(opts.docker, err, [{ ref: nodeImage, arg: 'NODE_IMAGE', what: 'the bake builder image' }]);
  }
}

/**
 * A base image must be in the engine's store or pullable. Checked before the build: BuildKit retries an
 * unreachable registry for minutes before failing, a pull through the API fails in seconds.
 */
export async function ensureBaseImage(docker: Docker, ref: string, arg: string, what: string): Promise<void> {
  if (ref === 'scratch' || (await hasImage(docker, ref))) return;
  const missing = (why: string, cause?: unknown): EngineError =>
    new EngineError(`base image ${ref} for ${what} is not in the engine's image store and could not be pulled: ${why}`, {
      field: arg,
      expected: 'an image the engine has or can pull',
      hint: `pull or load it first (\`docker pull ${ref}\`, \`docker load\`), or build on another base with --build-arg ${arg}=<image> (test/support/docker-env.sh makes local ones)`,
      cause,
    });
  try {
    const stream = (await docker.pull(ref)) as NodeJS.ReadableStream;
    let error: string | undefined;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer within 120 s')), 120_000);
      docker.modem.followProgress(stream, (err: Error | null) => (clearTimeout(timer), err ? reject(err) : resolve()), (line: { error?: string }) => {
        if (line.error) error ??= line.error;
      });
    });
    if (error) throw new Error(error);
  } catch (err) {
    throw missing((err as Error).message.replace(/^\(HTTP code \d+\) [a-z ]+ - /, '').trim(), err);
  }
  if (!(await hasImage(docker, ref))) throw missing('the pull ended without the image');
}

/** Turns "could not pull" failures into an error naming the missing base image and how to provide it. */
async function explainMissingBase(docker: Docker, err: unknown, bases: { ref: string; arg: string; what: string }[]): Promise<unknown> {
  // Only failures that look like a pull: a RUN step failing is not about base images.
  if (!(err instanceof EngineError) || !/pull|resolve|not found|no such host|dial tcp|failed to fetch|unauthorized|denied/i.test(err.message)) return err;
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
  const spec = targetOf(opts.recipe, opts.target);
  const args: Record<string, string> = { SOURCE_DATE_EPOCH: '0', ...opts.buildArgs };
  if (args.BUNDLE_MODELS !== undefined && args.BUNDLE_MODELS !== 'true' && args.BUNDLE_MODELS !== 'false') {
    throw new InputError(`BUNDLE_MODELS is ${JSON.stringify(args.BUNDLE_MODELS)}`, { field: 'BUNDLE_MODELS', expected: 'true or false' });
  }
  const docker = opts.docker ?? connectEngine();
  await pingEngine(docker);
  const baseArg = baseArgName(opts.target);
  const base = args[baseArg] ?? spec.base;
  await ensureBaseImage(docker, base, baseArg, `target ${opts.target}`);
  const bakeImage = args.BAKE_IMAGE ?? DEFAULT_BAKE_IMAGE;
  if (opts.ensureBuilder !== false) await ensureBakeImage({ docker, tag: bakeImage, nodeImage: opts.nodeImage, onEvent: opts.onEvent });

  const dockerfile = rel(opts.contextDir, opts.dockerfile);
  const context = packContext({ root: opts.contextDir, include: [...contextPathsFor(opts.recipe, opts.contextDir), dockerfile] });
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

export interface BuildRecipeOptions {
  /** Project root (holds recipes/, models.lock, docker/). */
  root: string;
  recipe: Recipe;
  targets: TargetName[];
  /**
   * Applied to every target (BUNDLE_MODELS, HF_ENDPOINT, BAKE_IMAGE, BASE_IMAGE_<TARGET>...).
   * BAKE_IMAGE and BASE_IMAGE_<TARGET> default to the environment variables of those names.
   */
  buildArgs?: Record<string, string>;
  /** Base image for every target built (sets BASE_IMAGE_<TARGET>). */
  base?: string;
  network?: 'none' | 'host';
  hfToken?: string;
  nodeImage?: string;
  ensureBuilder?: boolean;
  noCache?: boolean;
  /** Short models digest per target, for `{models}` tag templates. */
  modelsDigest?: Partial<Record<TargetName, string>>;
  onEvent?: (target: TargetName, e: BuildEvent) => void;
  docker?: Docker;
}

export interface BuiltTarget {
  target: TargetName;
  imageId: string;
  tags: string[];
}

/**
 * `bake build <recipe> --target ...` through the engine: writes docker/<recipe>/Dockerfile and
 * docker/docker-bake.hcl, then builds each target in turn (BuildKit already runs the independent
 * models stages of one target in parallel; two targets share those stages through its cache).
 */
export async function buildRecipe(opts: BuildRecipeOptions): Promise<{ dockerfile: string; bakeHcl: string; images: BuiltTarget[] }> {
  for (const t of opts.targets) targetOf(opts.recipe, t);
  const docker = opts.docker ?? connectEngine();
  await pingEngine(docker);
  const files = await writeBuildFiles({ root: opts.root, recipe: opts.recipe, bakeImage: opts.buildArgs?.BAKE_IMAGE });
  const images: BuiltTarget[] = [];
  // Like `docker build --build-arg NAME` without a value: these come from the environment when set.
  const fromEnv: Record<string, string> = {};
  for (const name of ['BAKE_IMAGE', ...opts.targets.map(baseArgName)]) if (process.env[name]) fromEnv[name] = process.env[name]!;
  for (const target of opts.targets) {
    const tags = imageTags({ recipe: opts.recipe, dockerfile: files.dockerfileRel, modelsDigest: opts.modelsDigest }, target);
    const buildArgs = { ...fromEnv, ...opts.buildArgs, ...(opts.base ? { [baseArgName(target)]: opts.base } : {}) };
    const { imageId } = await buildTarget({
      recipe: opts.recipe,
      target,
      contextDir: opts.root,
      dockerfile: files.dockerfile,
      buildArgs,
      tag: tags[0] ?? `${opts.recipe.image.name}:${target}`,
      tags: tags.slice(1),
      network: opts.network,
      hfToken: opts.hfToken,
      nodeImage: opts.nodeImage,
      ensureBuilder: opts.ensureBuilder,
      noCache: opts.noCache,
      onEvent: opts.onEvent ? (e) => opts.onEvent!(target, e) : undefined,
      docker,
    });
    images.push({ target, imageId, tags: tags.length ? tags : [`${opts.recipe.image.name}:${target}`] });
  }
  return { dockerfile: files.dockerfile, bakeHcl: files.bakeHcl, images };
}
