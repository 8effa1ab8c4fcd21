// docker/<recipe>/Dockerfile from a recipe: a models stage per model that runs bake inside BuildKit,
// a runtime stage per target on a base image given as an ARG, and the BUNDLE_MODELS switch.
// Rules the engines here impose (specs/machine.md): no `# syntax=` line (the frontend image cannot be
// pulled), no heredocs, no COPY --link, no RUN --network; base images only as ARGs.
import { posix } from 'node:path';
import type { ModelSpec, Recipe, TargetName, TargetSpec } from '../../recipe/types.js';
import { TARGET_NAMES } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { fetchArgName } from '../../runtime/manifest.js';

/** The image holding node + bake that runs the models stages (docker/bake.Dockerfile builds it). */
export const DEFAULT_BAKE_IMAGE = 'bake-builder:local';

/** Where models land in every image. */
export const MODELS_DIR = '/app/models';
/** Where the runtime app (loadModels + the per-target launcher) lives in every image. */
export const RUNTIME_DIR = '/opt/bake-runtime';

/** The build ARG that picks each target's base image. */
export function baseArgName(target: TargetName): string {
  return `BASE_IMAGE_${target.toUpperCase()}`;
}

export interface DockerfileInputs {
  recipe: Recipe;
  /** Project-relative POSIX path of the recipe file (the build context is the project root). */
  recipePath: string;
  /** Project-relative POSIX path of models.lock. */
  lockPath?: string;
  /**
   * Project-relative POSIX folders that local (`path:`) models read, by model id; the models stage
   * copies them in. `npm:` paths resolve to node_modules/<pkg>/... (plus its package.json).
   */
  localPaths?: Record<string, string[]>;
  bakeImage?: string;
}

export function checkTarget(recipe: Recipe, target: string): TargetSpec {
  if (!(TARGET_NAMES as readonly string[]).includes(target)) {
    throw new InputError(`unknown target "${target}"`, {
      field: 'target',
      expected: `one of ${TARGET_NAMES.join(', ')} (or all)`,
      hint: `pass --target ${recipe.targets.map((t) => t.name).join('|')}|all`,
    });
  }
  const spec = recipe.targets.find((t) => t.name === target);
  if (!spec) {
    throw new InputError(`recipe ${recipe.name} has no target "${target}"`, {
      file: recipe.file,
      field: 'targets',
      expected: recipe.targets.map((t) => t.name).join(', '),
      hint: `add \`${target}: {}\` under targets: in the recipe, or build one of its targets`,
    });
  }
  return spec;
}

export function modelsOf(recipe: Recipe, target: TargetName): ModelSpec[] {
  return recipe.models.filter((m) => !m.targets || m.targets.includes(target));
}

function stageOf(id: string): string {
  return `model-${id}`;
}

/** A JSON-array instruction argument (exec form), safe for any string. */
function execForm(args: string[]): string {
  return JSON.stringify(args);
}

function quoteLabel(v: string): string {
  return JSON.stringify(v);
}

/** What each target's runtime launches after loadModels (see src/runtime/serve.ts). */
const RUNTIME_NOTES: Record<TargetName, string> = {
  cpu: 'node on the base image runs the runtime app: verify models, open each ONNX model with onnxruntime-node, serve /health',
  llamacpp: 'the runtime app (with its own node) verifies models, then runs the base image\'s llama-server on each GGUF',
  cuda: 'the runtime app (with its own node) verifies models, then runs vLLM\'s OpenAI server on the model folder',
};

/** The stage a target's images start from: its base plus the runtime app (none on scratch). */
function runtimeStage(t: TargetSpec, modelIds: string[]): string[] {
  const env: Record<string, string> = { BAKE_MODELS_DIR: MODELS_DIR, BAKE_TARGET: t.name, BAKE_MODELS: modelIds.join(',') };
  if (t.port) env.BAKE_PORT = String(t.port);
  for (const [k, v] of Object.entries(t.env ?? {})) env[k] = v;
  const envLine = `ENV ${Object.entries(env).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' \\\n    ')}`;
  const from = `FROM \${${baseArgName(t.name)}} AS ${t.name}-runtime`;
  if (t.base === 'scratch') {
    // A models-only image (the recipe asked for no base): nothing in it could run the runtime app.
    return [`# ---- target ${t.name}: models only (base scratch: no runtime app; other images copy /app/models from it)`, from, envLine, ''];
  }
  const L = [`# ---- target ${t.name}: ${RUNTIME_NOTES[t.name]}`, from, `COPY --from=bake ${RUNTIME_DIR}/app/ ${RUNTIME_DIR}/app/`];
  let node = 'node';
  if (t.name === 'cpu') {
    L.push(`COPY --from=bake ${RUNTIME_DIR}/onnxruntime/node_modules/ ${RUNTIME_DIR}/app/node_modules/`);
  } else {
    // The llama.cpp and vLLM images have no node; the runtime app brings its own.
    L.push(`COPY --from=bake /usr/local/bin/node ${RUNTIME_DIR}/bin/node`);
    node = `${RUNTIME_DIR}/bin/node`;
  }
  L.push(envLine);
  if (t.port) L.push(`EXPOSE ${t.port}`);
  L.push(`ENTRYPOINT ${execForm([node, `${RUNTIME_DIR}/app/bake-runtime.mjs`, 'serve', '--'])}`, `CMD ${execForm(t.cmd ?? [])}`, '');
  return L;
}

export function renderDockerfile(inputs: DockerfileInputs): string {
  const { recipe } = inputs;
  const recipePath = inputs.recipePath;
  const lockPath = inputs.lockPath ?? 'models.lock';
  const bakeImage = inputs.bakeImage ?? DEFAULT_BAKE_IMAGE;
  const L: string[] = [];
  const targets = recipe.targets.map((t) => t.name);
  const example = targets[0]!;
  L.push(
    `# Generated by \`bake build ${recipe.name}\` from ${recipePath}; edits are overwritten on the next build.`,
    '# Build from the project root with the Docker engine\'s BuildKit, one target at a time:',
    `#   DOCKER_BUILDKIT=1 docker build -f docker/${recipe.name}/Dockerfile --target ${example} --network none -t ${recipe.image.name}:${example} .`,
    '# A Hub token goes in as a BuildKit secret only (never ARG or ENV):',
    '#   --secret id=hf_token,src=$HOME/.cache/huggingface/token',
    '# Images without model bytes (the runtime fetches the locked files at start): --build-arg BUNDLE_MODELS=false',
    '# Other bases: --build-arg ' + targets.map((t) => `${baseArgName(t)}=<image>`).join(' '),
    '',
    `ARG BAKE_IMAGE=${bakeImage}`,
  );
  for (const t of recipe.targets) L.push(`ARG ${baseArgName(t.name)}=${t.base}`);
  L.push('ARG BUNDLE_MODELS=true', '');

  L.push('# The bake builder: node + bake; the runtime app and onnxruntime are copied out of it.', 'FROM ${BAKE_IMAGE} AS bake', '');

  const used = new Set(recipe.targets.flatMap((t) => modelsOf(recipe, t.name).map((m) => m.id)));
  for (const model of recipe.models) {
    if (!used.has(model.id)) continue;
    const stage = stageOf(model.id);
    L.push(
      `# ---- model ${model.id}: ${model.repo ? `${model.repo}@${model.revision}` : model.path} -> ${model.quantize.format}${'type' in model.quantize ? ` ${model.quantize.type}` : ''}`,
      '# Its own stage, so changing this model re-runs and re-layers only this model.',
      `FROM bake AS ${stage}`,
      'ARG HF_ENDPOINT',
      'ARG SOURCE_DATE_EPOCH=0',
      'WORKDIR /work',
      `COPY ${lockPath} ${posix.join('/work', lockPath)}`,
      `COPY ${recipePath} ${posix.join('/work', recipePath)}`,
    );
    for (const p of inputs.localPaths?.[model.id] ?? []) L.push(`COPY ${p} ${posix.join('/work', p)}`);
    L.push(
      // Cache mounts: the Hub cache and the artifact store outlive the build, so a rebuild with the
      // same inputs downloads and quantizes nothing. The token is a secret mount: never in a layer.
      'RUN --mount=type=cache,id=bake-hf-home,target=/cache/hf,sharing=locked \\',
      '    --mount=type=cache,id=bake-store,target=/cache/store,sharing=locked \\',
      '    --mount=type=secret,id=hf_token \\',
      `    HF_HOME=/cache/hf BAKE_STORE=/cache/store bake-materialize ${recipePath} ${model.id} ${MODELS_DIR}`,
      '',
      `FROM bake AS ${stage}-unbundled`,
      'ARG SOURCE_DATE_EPOCH=0',
      `# Where the runtime fetches the files: org/name@<commit> (default: the source repo, for unquantized models).`,
      `ARG ${fetchArgName(model.id)}`,
      `COPY --from=${stage} /out${MODELS_DIR}/${model.id}/manifest.json /in/manifest.json`,
      `RUN bake-runtime unbundle /in/manifest.json /out${MODELS_DIR}/${model.id}`,
      '',
    );
  }

  for (const t of recipe.targets) {
    const models = modelsOf(recipe, t.name);
    const rt = `${t.name}-runtime`;
    L.push(...runtimeStage(t, models.map((m) => m.id)));

    L.push(`FROM ${rt} AS ${t.name}-models-true`);
    for (const m of models) L.push(`COPY --from=${stageOf(m.id)} /out/ /`);
    L.push('', `FROM ${rt} AS ${t.name}-models-false`);
    for (const m of models) L.push(`COPY --from=${stageOf(m.id)}-unbundled /out/ /`);
    L.push('');
    const labels: Record<string, string> = {
      ...recipe.image.labels,
      'org.opencontainers.image.title': `${recipe.name} (${t.name})`,
      'org.opencontainers.image.version': recipe.image.version,
      'dev.bake.recipe': recipe.name,
      'dev.bake.target': t.name,
      'dev.bake.models': models.map((m) => m.id).join(','),
    };
    L.push(
      '# Dockerfile has no conditionals: the stage name picks bundled or not.',
      `FROM ${t.name}-models-\${BUNDLE_MODELS} AS ${t.name}`,
      'ARG BUNDLE_MODELS',
      `LABEL ${Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${quoteLabel(k)}=${quoteLabel(v)}`).join(' \\\n      ')} \\`,
      '      "dev.bake.bundled"="${BUNDLE_MODELS}"',
      '',
    );
  }
  return L.join('\n');
}

/** Folders a local model's stage copies (project-relative), from its `path:` value. */
export function localPathsFor(model: ModelSpec, recipePath: string): string[] {
  if (!model.path) return [];
  if (model.path.startsWith('npm:')) {
    const spec = model.path.slice(4);
    const parts = spec.split('/');
    const n = spec.startsWith('@') ? 2 : 1;
    const pkg = parts.slice(0, n).join('/');
    const sub = parts.slice(n).join('/');
    return [`node_modules/${pkg}/package.json`, posix.join('node_modules', pkg, sub)];
  }
  const p = posix.normalize(posix.join(posix.dirname(recipePath), model.path));
  if (p.startsWith('..') || posix.isAbsolute(p)) {
    throw new InputError(`model ${model.id}: path ${model.path} is outside the project, so a docker build cannot see it`, {
      file: recipePath,
      field: `models.${model.id}.path`,
      hint: 'move the model folder inside the project (the build context is the project root)',
    });
  }
  return [p];
}
