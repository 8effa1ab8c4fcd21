// The runtime app each image starts, by server kind: bake's own onnx server in-process (src/runtime/onnx:
// TEI/OpenAI embeddings and reranking on onnxruntime-node, cpu or cuda), or load (verify or fetch) the
// model and start llama-server or vLLM as a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../util/errors.js';
import { loadModels, type LoadedModel, type LoadOptions } from './load.js';

/** The server kinds the runtime app starts (src/runtime/contract.ts; `none` images run nothing). */
export type RuntimeServer = 'onnx' | 'llama-server' | 'vllm';

export interface ServeOptions extends LoadOptions {
  server: RuntimeServer;
  /** onnx: onnxruntime's execution provider. */
  device?: 'cpu' | 'cuda';
  port?: number;
  /** Extra arguments for the server (llama-server / vLLM), from the image's CMD. */
  extraArgs?: string[];
}

export interface Serving {
  models: LoadedModel[];
  /** Resolves with the exit code when serving stops (a child exits, or stop() was called). */
  done: Promise<number>;
  stop(): void;
}

/** The file a target runs: the smallest .gguf (a kept F16 source is larger) or every .onnx. */
export function modelFiles(m: LoadedModel, ext: '.gguf' | '.onnx'): string[] {
  const files = m.manifest.files.filter((f) => f.path.endsWith(ext));
  if (ext === '.gguf') files.sort((a, b) => a.size - b.size || (a.path < b.path ? -1 : 1));
  return files.map((f) => join(m.dir, f.path));
}

export async function serve(opts: ServeOptions): Promise<Serving> {
  const env = opts.env ?? process.env;
  const port = opts.port ?? Number(env.BAKE_PORT || 8080);
  // bake's own server listens before the models load (its /health says 503 meanwhile): src/runtime/onnx.
  if (opts.server === 'onnx') {
    const { serveOnnx } = await import('./onnx/index.js');
    return serveOnnx({ ...opts, device: opts.device ?? 'cpu', port });
  }
  const log = opts.log ?? (() => {});
  const models = await loadModels(opts);
  // llama-server and vLLM serve one model per process: a target carries one (src/recipe/targets.ts).
  if (models.length !== 1) throw new InputError(`a ${opts.server} target serves exactly one model; this image has ${models.length}: ${models.map((m) => m.id).join(', ')}`, { field: 'BAKE_MODELS', hint: 'declare one target per model in the recipe' });
  const start = opts.server === 'llama-server' ? llamaServer : vllm;
  return serveChildren(models, port, log, (m, p) => start(m, p, opts.extraArgs ?? [], env));
}

function llamaServer(m: LoadedModel, port: number, extra: string[], env: NodeJS.ProcessEnv): { cmd: string; args: string[] } {
  const gguf = modelFiles(m, '.gguf')[0];
  if (!gguf) throw new InputError(`model ${m.id} has no .gguf file; the llamacpp target serves GGUF models`, { field: `models.${m.id}.quantize.format`, hint: 'quantize it with format: gguf, or leave it out of the llamacpp target (targets: [...] on the model)' });
  const cmd = env.BAKE_LLAMA_SERVER || (existsSync('/app/llama-server') ? '/app/llama-server' : 'llama-server');
  return { cmd, args: ['-m', gguf, '--alias', m.id, '--host', env.BAKE_HOST || '0.0.0.0', '--port', String(port), ...extra] };
}

function vllm(m: LoadedModel, port: number, extra: string[], env: NodeJS.ProcessEnv): { cmd: string; args: string[] } {
  const cmd = env.BAKE_VLLM || 'vllm';
  // The recipe's served_model_name comes in the image's CMD (server.settings); else the model id.
  const named = extra.some((a) => a === '--served-model-name' || a.startsWith('--served-model-name='));
  return { cmd, args: ['serve', m.dir, ...(named ? [] : ['--served-model-name', m.id]), '--host', env.BAKE_HOST || '0.0.0.0', '--port', String(port), ...extra] };
}

function serveChildren(
  models: LoadedModel[],
  port: number,
  log: (l: string) => void,
  command: (m: LoadedModel, port: number) => { cmd: string; args: string[] },
): Serving {
  const children: ChildProcess[] = [];
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (finish = r));
  let exited = false;
  // One server per model, on consecutive ports; when one exits the container should stop too.
  models.forEach((m, i) => {
    const { cmd, args } = command(m, port + i);
    log(`starting ${cmd} ${args.join(' ')}`);
    const child = spawn(cmd, args, { stdio: 'inherit' });
    child.on('error', (err) => {
      log(`could not start ${cmd}: ${err.message}`);
      stopAll(127);
    });
    child.on('exit', (code, signal) => {
      log(`${cmd} for ${m.id} exited (${signal ?? code})`);
      stopAll(code ?? 1);
    });
    children.push(child);
  });
  function stopAll(code: number): void {
    if (exited) return;
    exited = true;
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    finish(code);
  }
  return { models, done, stop: () => stopAll(0) };
}
