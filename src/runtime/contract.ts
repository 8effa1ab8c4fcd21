// The runtime contract: where an image keeps its models and bake's runtime app, which environment the
// app reads, how it starts, on which port it serves and how it is health-checked. The Dockerfile
// generator, the daemonless image writer and the runtime app itself all read this one module, so an
// image built either way starts the same.
import type { ServerKind, ServerSpec, TargetSpec, VllmSettings } from '../recipe/types.js';
import { settingsArgs } from './llama-server/settings.js';
import type { BakeErrorOptions } from '../util/errors.js';
import { vllmArgs } from './vllm.js';

/** Where models land in every image: /app/models/<id>/ with manifest.json. */
export const MODELS_DIR = '/app/models';
/** bake's runtime app: one bundled file, plus onnxruntime-node and a node binary where needed. */
export const RUNTIME_DIR = '/opt/bake-runtime';
export const RUNTIME_APP = `${RUNTIME_DIR}/app/bake-runtime.mjs`;
/** The node the app runs on when the base image has none (llama.cpp's, vLLM's, CUDA's). */
export const RUNTIME_NODE = `${RUNTIME_DIR}/bin/node`;
/** onnxruntime-node, beside the bundle so the bundle's `import 'onnxruntime-node'` finds it. */
export const RUNTIME_ONNXRUNTIME = `${RUNTIME_DIR}/app/node_modules`;

/** Environment variables the runtime app reads. */
export const RUNTIME_ENV = {
  modelsDir: 'BAKE_MODELS_DIR',
  server: 'BAKE_SERVER',
  device: 'BAKE_DEVICE',
  models: 'BAKE_MODELS',
  port: 'BAKE_PORT',
  healthPath: 'BAKE_HEALTH_PATH',
  /** Images without model bytes: where fetched or quantized-at-start models are kept (a volume keeps them). */
  modelsCache: 'BAKE_MODELS_CACHE',
  /** Images without model bytes: another repository to pull the model layers from (a mirror). */
  modelsRegistry: 'BAKE_MODELS_REGISTRY',
} as const;

/** The pieces of the runtime app an image needs. */
export type RuntimePart = 'app' | 'onnxruntime' | 'node';

export interface Healthcheck {
  /** Docker's form: ["CMD", ...argv]. */
  test: string[];
  /** Seconds. */
  interval: number;
  timeout: number;
  startPeriod: number;
  retries: number;
}

/** Everything an image of one target adds to its base besides the model layers. */
export interface RuntimeImage {
  parts: RuntimePart[];
  entrypoint: string[];
  cmd: string[];
  env: Record<string, string>;
  exposedPort?: number;
  healthcheck?: Healthcheck;
}

/** A node base image brings node; every other base gets the runtime's own. */
function nodeFor(kind: ServerKind, device: string): { path: string; bring: boolean } {
  return kind === 'onnx' && device === 'cpu' ? { path: 'node', bring: false } : { path: RUNTIME_NODE, bring: true };
}

/**
 * The server's arguments (the image's CMD): a llama-server target's settings as flags, then `args`.
 * `settings` overrides some of the target's (bake bench runs the image with each point of a sweep).
 */
export function serverArgs(server: ServerSpec, settings: ServerSpec['settings'] = {}, where?: (key: string) => BakeErrorOptions): string[] {
  const merged = { ...server.settings, ...settings };
  // The run settings become the server's flags, ahead of the recipe's extra arguments.
  if (server.kind === 'llama-server') return [...settingsArgs(merged, where), ...server.args];
  if (server.kind === 'vllm') return [...vllmArgs(merged as VllmSettings), ...server.args];
  return [...server.args];
}

/** The runtime part of a target's image; undefined for a models-only target (server kind none). */
export function runtimeImage(target: TargetSpec): RuntimeImage | undefined {
  const { server } = target;
  if (server.kind === 'none') return undefined;
  const node = nodeFor(server.kind, server.device);
  const parts: RuntimePart[] = ['app'];
  if (server.kind === 'onnx') parts.push('onnxruntime');
  if (node.bring) parts.push('node');
  const env: Record<string, string> = {
    [RUNTIME_ENV.modelsDir]: MODELS_DIR,
    [RUNTIME_ENV.server]: server.kind,
    [RUNTIME_ENV.models]: target.models.join(','),
  };
  if (server.kind === 'onnx') env[RUNTIME_ENV.device] = server.device;
  if (server.port) env[RUNTIME_ENV.port] = String(server.port);
  if (server.health) env[RUNTIME_ENV.healthPath] = server.health.path;
  Object.assign(env, server.env, target.env);
  const image: RuntimeImage = {
    parts,
    // `docker run <image> --flag` replaces CMD: the server's arguments, after the `--`.
    entrypoint: [node.path, RUNTIME_APP, 'serve', '--'],
    cmd: serverArgs(server),
    env: Object.fromEntries(Object.entries(env).sort(([a], [b]) => (a < b ? -1 : 1))),
  };
  if (server.port) image.exposedPort = server.port;
  if (server.health && server.port) {
    image.healthcheck = {
      test: ['CMD', node.path, RUNTIME_APP, 'health'],
      interval: server.health.interval,
      timeout: server.health.timeout,
      startPeriod: server.health.start_period,
      retries: server.health.retries,
    };
  }
  return image;
}
