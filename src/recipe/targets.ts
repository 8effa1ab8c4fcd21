// Targets: what each image runs (its server) and which models it carries. The one owner of target
// defaults, of the model <-> target rules and of looking a target up by name.
import type { BakeErrorOptions } from '../util/errors.js';
import { InputError } from '../util/errors.js';
import { checkServerArgs, settingsArgs } from '../runtime/llama-server/settings.js';
import { VLLM_SETTINGS, vllmArgs, vllmHostSettings } from '../runtime/vllm.js';
import type { DeploySpec, HealthSpec, ModelSpec, QuantSpec, Recipe, ServerKind, ServerSpec, TargetSpec, VllmSettings } from './types.js';

/** Base images by server kind (and onnx device); a build ARG or --base overrides them. */
export const DEFAULT_BASES: Record<'onnx' | 'onnx-cuda' | 'llama-server' | 'llama-server-cuda' | 'vllm' | 'none', string> = {
  onnx: 'node:20-bookworm-slim',
  'onnx-cuda': 'nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04',
  'llama-server': 'ghcr.io/ggml-org/llama.cpp:server',
  'llama-server-cuda': 'ghcr.io/ggml-org/llama.cpp:server-cuda',
  vllm: 'vllm/vllm-openai:v0.10.1',
  none: 'scratch',
};

const DEFAULT_PORTS: Record<ServerKind, number | undefined> = { onnx: 8080, 'llama-server': 8080, vllm: 8000, none: undefined };

/** Target names bake knew before servers were declared; they keep meaning what they meant. */
const LEGACY_KINDS: Record<string, ServerKind> = { cpu: 'onnx', llamacpp: 'llama-server', cuda: 'vllm' };

/** Quantize formats each server can load. */
const SERVES: Record<ServerKind, readonly QuantSpec['format'][]> = {
  onnx: ['onnx-int8', 'onnx-fp16', 'none'],
  'llama-server': ['gguf', 'none'],
  vllm: ['awq', 'none'],
  none: ['onnx-int8', 'onnx-fp16', 'gguf', 'awq', 'none'],
};

/** How a server answers health checks; what the image's HEALTHCHECK asks. */
const HEALTH_PATHS: Record<ServerKind, string | undefined> = { onnx: '/health', 'llama-server': '/health', vllm: '/health', none: undefined };

export function serves(kind: ServerKind, format: QuantSpec['format']): boolean {
  return SERVES[kind].includes(format);
}

export interface RawTarget {
  base?: string;
  server?: Partial<Omit<ServerSpec, 'health'>> & { health?: Partial<HealthSpec> };
  models?: string[];
  env?: Record<string, string>;
  deploy?: Partial<DeploySpec>;
  /** Deprecated spellings of server.args and server.port. */
  cmd?: string[];
  port?: number;
}

type Locate = (path: (string | number)[]) => BakeErrorOptions;

/** Fills defaults and checks every model <-> target reference. Runs once, when the recipe loads. */
export function normalizeTargets(raw: Record<string, RawTarget>, models: ModelSpec[], at: Locate): TargetSpec[] {
  const ids = new Set(models.map((m) => m.id));
  for (const [i, m] of models.entries()) {
    for (const t of m.targets ?? []) {
      if (!(t in raw)) throw new InputError(`models[${i}].targets: target "${t}" is not declared under targets:`, { ...at(['models', i, 'targets']), expected: Object.keys(raw).join(', ') });
    }
  }
  return Object.entries(raw).map(([name, t]) => {
    if (name === 'bake' || name.startsWith('model-')) {
      throw new InputError(`targets.${name}: this name is taken by a stage of the generated Dockerfile`, { ...at(['targets', name]), expected: 'a name other than bake or model-*' });
    }
    const base0 = t.base;
    const kind: ServerKind | undefined = t.server?.kind ?? (base0 === 'scratch' ? 'none' : LEGACY_KINDS[name]);
    if (!kind) {
      throw new InputError(`targets.${name}: say what this target runs`, {
        ...at(['targets', name]), field: `targets.${name}.server.kind`, expected: 'server: { kind: onnx | llama-server | vllm | none }',
        hint: 'kind none bakes a models-only image; the others add bake\'s runtime and a server',
      });
    }
    // onnx: the execution provider; llama-server: a CUDA build of llama-server (its base, and a GPU
    // reserved for it in the compose file); vLLM always runs on the GPU.
    const device = t.server?.device ?? (kind === 'vllm' ? 'cuda' : 'cpu');
    if (device === 'cuda' && kind === 'none') {
      throw new InputError(`targets.${name}.server.device: a models-only image runs nothing on a device`, at(['targets', name, 'server', 'device']));
    }
    if (device === 'cpu' && kind === 'vllm') {
      throw new InputError(`targets.${name}.server.device: vLLM runs on CUDA GPUs`, { ...at(['targets', name, 'server', 'device']), expected: 'cuda (or leave device out)' });
    }
    const base = base0 ?? DEFAULT_BASES[device === 'cuda' && (kind === 'onnx' || kind === 'llama-server') ? (`${kind}-cuda` as const) : kind];
    if (kind !== 'none' && base === 'scratch') {
      throw new InputError(`targets.${name}: base scratch has nothing to run server kind ${kind} on`, {
        ...at(['targets', name, 'base']), expected: `a base image, or server.kind none for a models-only image`,
      });
    }
    const port = t.server?.port ?? t.port ?? DEFAULT_PORTS[kind];
    const healthPath = t.server?.health?.path ?? HEALTH_PATHS[kind];
    const health: HealthSpec | undefined = healthPath && port
      ? { path: healthPath, interval: t.server?.health?.interval ?? 10, timeout: t.server?.health?.timeout ?? 5, start_period: t.server?.health?.start_period ?? (kind === 'vllm' ? 600 : 60), retries: t.server?.health?.retries ?? 3 }
      : undefined;
    const carried = targetModels(name, t, kind, models, ids, at);
    const args = t.server?.args ?? t.cmd ?? [];
    const settings = serverSettings(name, t, kind, models.filter((m) => carried.includes(m.id)), args, at);
    const server: ServerSpec = {
      kind, port: kind === 'none' ? undefined : port, settings, args, env: t.server?.env ?? {}, device, ...(health ? { health } : {}),
      ...(kind === 'vllm' ? { host: vllmHostSettings(settings as VllmSettings) } : {}),
    };
    if (kind === 'vllm') checkVllmArgs(name, server, at);
    if ((kind === 'llama-server' || kind === 'vllm') && carried.length > 1) {
      throw new InputError(`targets.${name}: a ${kind} server serves one model, and this target would carry ${carried.length} (${carried.join(', ')})`, {
        ...at(['targets', name]), field: `targets.${name}.models`, hint: `declare one target per model (several targets may share server kind ${kind}), e.g. chat: and embed:`,
      });
    }
    return { name, base, server, models: carried, env: t.env ?? {}, deploy: deploySpec(name, t, kind, device, at) };
  });
}

/** A flag given both as a setting and in server.args would reach vLLM twice: refused. */
function checkVllmArgs(name: string, server: ServerSpec, at: Locate): void {
  const fromSettings = vllmArgs(server.settings as VllmSettings).filter((a) => a.startsWith('--'));
  for (const [i, a] of server.args.entries()) {
    const flag = a.split('=')[0]!;
    if (fromSettings.includes(flag)) {
      throw new InputError(`targets.${name}.server.args[${i}]: ${flag} is also set by server.settings`, { ...at(['targets', name, 'server', 'args', i]), hint: `keep it in server.settings only` });
    }
  }
}

/** How the fleet runs the target (bake compose): replicas, restart policy, memory and CPU limits, GPUs. */
function deploySpec(name: string, t: RawTarget, kind: ServerKind, device: string, at: Locate): DeploySpec {
  const d = t.deploy ?? {};
  if (kind === 'none' && (d.replicas ?? 0) > 0) {
    throw new InputError(`targets.${name}.deploy.replicas: a models-only image (server kind none) runs nothing`, { ...at(['targets', name, 'deploy', 'replicas']), expected: '0, or leave deploy out' });
  }
  if (d.gpus !== undefined && device !== 'cuda') {
    throw new InputError(`targets.${name}.deploy.gpus: this target does not run on a GPU (server.device ${device})`, { ...at(['targets', name, 'deploy', 'gpus']), hint: 'set server.device: cuda (and a CUDA base), or remove deploy.gpus' });
  }
  return {
    replicas: d.replicas ?? (kind === 'none' ? 0 : 1),
    restart: d.restart ?? 'unless-stopped',
    ...(d.memory !== undefined ? { memory: d.memory } : {}),
    ...(d.cpus !== undefined ? { cpus: d.cpus } : {}),
    ...(d.port !== undefined ? { port: d.port } : {}),
    ...(device === 'cuda' ? { gpus: d.gpus ?? 'all' } : {}),
  };
}

/**
 * server.settings, checked against the flags of the bundled llama-server (a typo is an error naming the
 * key, with the nearest flag); server.args are checked the same way. A feature-extraction model's server
 * runs with --embedding unless the recipe says otherwise.
 */
function serverSettings(name: string, t: RawTarget, kind: ServerKind, carried: ModelSpec[], args: string[], at: Locate): ServerSpec['settings'] {
  const raw = t.server?.settings ?? {};
  if (kind === 'vllm') {
    // The schema checks each vLLM setting's value; here, that no llama-server flag slipped in.
    for (const key of Object.keys(raw)) {
      if (!(VLLM_SETTINGS as readonly string[]).includes(key)) {
        throw new InputError(`targets.${name}.server.settings.${key}: not a vLLM run setting`, {
          ...at(['targets', name, 'server', 'settings', key]), field: `targets.${name}.server.settings.${key}`, expected: VLLM_SETTINGS.join(', '), hint: 'pass other vllm serve flags in server.args',
        });
      }
    }
    return { ...raw };
  }
  if (kind !== 'llama-server') {
    if (Object.keys(raw).length) {
      throw new InputError(`targets.${name}.server.settings: this target runs ${kind}, which takes no run settings`, {
        ...at(['targets', name, 'server', 'settings']), hint: kind === 'none' ? 'remove them' : 'pass the server\'s own flags in server.args',
      });
    }
    return {};
  }
  const argsField = t.server?.args ? ['server', 'args'] : ['cmd'];
  checkServerArgs(args, (i) => ({ ...at(['targets', name, ...argsField, i]), field: `targets.${name}.${argsField.join('.')}[${i}]` }));
  const settings = { ...raw };
  if (carried.some((m) => m.task === 'feature-extraction') && !('embedding' in raw) && !('embeddings' in raw)) settings.embedding = true;
  // Checked here, where the recipe's positions are known; the contract turns them into the CMD.
  settingsArgs(settings, (key) => ({ ...at(['targets', name, 'server', 'settings', key]), field: `targets.${name}.server.settings.${key}` }));
  return settings;
}

function targetModels(name: string, t: RawTarget, kind: ServerKind, models: ModelSpec[], ids: Set<string>, at: Locate): string[] {
  if (t.models) {
    for (const [i, id] of t.models.entries()) {
      if (!ids.has(id)) throw new InputError(`targets.${name}.models: no model has id "${id}"`, { ...at(['targets', name, 'models', i]), expected: [...ids].join(', ') });
      const m = models.find((x) => x.id === id)!;
      if (m.targets && !m.targets.includes(name)) {
        throw new InputError(`targets.${name}.models lists ${id}, whose own targets: (${m.targets.join(', ')}) leave ${name} out`, { ...at(['targets', name, 'models', i]), hint: 'keep one of the two lists' });
      }
      checkServes(name, kind, m, at(['targets', name, 'models', i]));
    }
    return models.filter((m) => t.models!.includes(m.id)).map((m) => m.id);
  }
  const chosen = models.filter((m) => (m.targets ? m.targets.includes(name) : serves(kind, m.quantize.format)));
  for (const m of chosen) if (m.targets) checkServes(name, kind, m, at(['models', models.indexOf(m), 'targets']));
  return chosen.map((m) => m.id);
}

function checkServes(target: string, kind: ServerKind, m: ModelSpec, where: BakeErrorOptions): void {
  if (serves(kind, m.quantize.format)) return;
  throw new InputError(`target ${target} runs ${kind}, which cannot serve model ${m.id} (quantize.format ${m.quantize.format})`, {
    ...where, expected: `models with format ${SERVES[kind].join(' or ')}`, hint: `carry ${m.id} in a target whose server serves ${m.quantize.format}`,
  });
}

/** The target called `name`, or a clear error listing the recipe's targets. */
export function targetOf(recipe: Recipe, name: string, field = '--target'): TargetSpec {
  const spec = recipe.targets.find((t) => t.name === name);
  if (!spec) {
    throw new InputError(`recipe ${recipe.name} has no target "${name}"`, {
      file: recipe.file, field, expected: `${recipe.targets.map((t) => t.name).join(', ')} (or all)`,
      hint: `build one of its targets, or add \`${name}:\` under targets: in ${recipe.file}`,
    });
  }
  return spec;
}

/** `--target` values: a target name, or `all` (the default). */
export function selectTargets(recipe: Recipe, which: string | undefined): TargetSpec[] {
  return !which || which === 'all' ? recipe.targets : [targetOf(recipe, which)];
}

/** The models a target carries, in recipe order. */
export function modelsForTarget(recipe: Recipe, target: TargetSpec | string): ModelSpec[] {
  const t = typeof target === 'string' ? targetOf(recipe, target) : target;
  return recipe.models.filter((m) => t.models.includes(m.id));
}
