// `server.kind: onnx`: bake's own server, in the runtime app's process. It listens first (GET /health
// answers 503 while models load), then finds or fetches each model (src/runtime/load.ts), opens it in
// onnxruntime-node (device cuda: the CUDA execution provider, falling back to CPU) and serves.
import { BakeError, ExitCode } from '../../util/errors.js';
import { loadModels, type LoadedModel, type LoadOptions } from '../load.js';
import { createMetrics } from './metrics.js';
import { openServed, type ServedModel } from './models.js';
import { buildServer, DEFAULT_LIMITS, type ServerLimits, type ServerState } from './server.js';

export { buildServer, DEFAULT_LIMITS, type ServerLimits, type ServerState } from './server.js';
export { createMetrics, type ServerMetrics } from './metrics.js';
export { openServed, servedFile, servingOf, type ServedModel, type ServedKind } from './models.js';
export { Batcher } from './batcher.js';

export interface OnnxServeOptions extends LoadOptions {
  device: 'cpu' | 'cuda';
  port: number;
  host?: string;
  limits?: Partial<ServerLimits>;
  /** Inputs per forward pass at most (default 32). */
  maxBatch?: number;
  /** onnxruntime intra-op threads (default: its own choice). */
  threads?: number;
}

export interface OnnxServing {
  /** Filled once loading is done. */
  models: LoadedModel[];
  /** The port it listens on (useful with port 0). */
  port: number;
  /** Resolves once every model is served; rejects when loading failed (the server then stops). */
  ready: Promise<void>;
  done: Promise<number>;
  stop(): void;
}

/** Limits from the environment: BAKE_MAX_BODY_BYTES, BAKE_MAX_INPUTS, BAKE_AUTO_TRUNCATE. */
export function limitsFromEnv(env: NodeJS.ProcessEnv): Partial<ServerLimits> {
  const n = (v: string | undefined) => (v && /^\d+$/.test(v) ? Number(v) : undefined);
  return {
    ...(n(env.BAKE_MAX_BODY_BYTES) ? { bodyLimit: n(env.BAKE_MAX_BODY_BYTES) } : {}),
    ...(n(env.BAKE_MAX_INPUTS) ? { maxInputs: n(env.BAKE_MAX_INPUTS) } : {}),
    ...(env.BAKE_AUTO_TRUNCATE ? { autoTruncate: /^(1|true|yes)$/i.test(env.BAKE_AUTO_TRUNCATE) } : {}),
  };
}

export async function serveOnnx(opts: OnnxServeOptions): Promise<OnnxServing> {
  const log = opts.log ?? (() => {});
  const env = opts.env ?? process.env;
  const metrics = createMetrics();
  const state: ServerState = { ready: false, models: [], progress: {} };
  const app = buildServer(state, metrics, { ...DEFAULT_LIMITS, ...limitsFromEnv(env), ...opts.limits }, log);
  await app.listen({ port: opts.port, host: opts.host ?? env.BAKE_HOST ?? '0.0.0.0' });
  const port = (app.server.address() as { port: number }).port;
  log(`listening on :${port}; /health answers 503 until the models are loaded`);
  const served: ServedModel[] = [];
  const loaded: LoadedModel[] = [];
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (finish = r));
  let stopping = false;
  const stop = (code = 0) => {
    if (stopping) return;
    stopping = true;
    void app.close().then(() => Promise.all(served.map((s) => s.release().catch(() => {})))).then(() => finish(code), () => finish(code));
  };
  const providers = opts.device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'];
  const ready = (async () => {
    const models = await loadModels({ ...opts, announce: false, onProgress: (id, what) => (state.progress[id] = what) });
    for (const m of models) {
      state.progress[m.id] = 'opening';
      const t0 = performance.now();
      const s = await openServed(m, { executionProviders: providers, log, threads: opts.threads ?? (Number(env.BAKE_ORT_THREADS) || undefined), maxBatch: opts.maxBatch ?? (Number(env.BAKE_MAX_BATCH) || 32), metrics });
      const ms = Math.round(m.ms + performance.now() - t0);
      metrics.loadSeconds.set({ model: m.id, source: m.source }, ms / 1000);
      log(`pre-quantized ${m.id} loaded in ${ms} ms${m.note ? ` (${m.note})` : ''}`);
      if (!s) {
        log(`${m.id}: no .onnx file in its manifest; nothing to open with onnxruntime`);
      } else {
        served.push(s);
        log(`onnxruntime opened ${m.id}: ${s.file} (inputs: ${s.inputs.join(', ')}; outputs: ${s.outputs.join(', ')})${s.kind === 'onnx' ? '' : ` as ${s.kind === 'embed' ? 'an embedder' : 'a reranker'}`} on ${s.device}`);
      }
      state.progress[m.id] = 'ready';
      loaded.push(m);
    }
    state.models = served;
    state.ready = true;
    metrics.ready.set(1);
    const routes = [served.some((s) => s.kind === 'embed') && '/embed, /v1/embeddings', served.some((s) => s.kind === 'rerank') && '/rerank'].filter(Boolean).join(', ');
    log(`serving ${served.length} ONNX model(s) on :${port} (${routes ? `${routes}, ` : ''}/health, /metrics)`);
  })();
  ready.catch((err: unknown) => {
    log(`error: ${(err as Error).message}${err instanceof Error && 'hint' in err && err.hint ? `\n  hint: ${String(err.hint)}` : ''}`);
    stop(err instanceof BakeError ? ExitCode[err.exit] : 1);
  });
  return { models: loaded, port, ready, done, stop: () => stop(0) };
}
