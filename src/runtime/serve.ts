// The runtime app each image starts: load (verify or fetch) the models, then hand them to the target's
// engine: onnxruntime-node in-process (cpu), llama-server (llamacpp) or vLLM (cuda) as a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
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
  const log = opts.log ?? (() => {});
  const env = opts.env ?? process.env;
  const models = await loadModels(opts);
  const port = opts.port ?? Number(env.BAKE_PORT || 8080);
  if (opts.server === 'onnx') return serveOnnx(models, port, log, opts.device ?? 'cpu');
  // llama-server and vLLM serve one model per process: a target carries one (src/recipe/targets.ts).
  if (models.length !== 1) throw new InputError(`a ${opts.server} target serves exactly one model; this image has ${models.length}: ${models.map((m) => m.id).join(', ')}`, { field: 'BAKE_MODELS', hint: 'declare one target per model in the recipe' });
  const start = opts.server === 'llama-server' ? llamaServer : vllm;
  return serveChildren(models, port, log, (m, p) => start(m, p, opts.extraArgs ?? [], env));
}

async function serveOnnx(models: LoadedModel[], port: number, log: (l: string) => void, device: 'cpu' | 'cuda'): Promise<Serving> {
  // Imported here: only the cpu image carries onnxruntime-node.
  const ort = await import('onnxruntime-node');
  const sessions: { id: string; file: string; inputs: readonly string[]; outputs: readonly string[] }[] = [];
  for (const m of models) {
    const files = modelFiles(m, '.onnx');
    if (files.length === 0) log(`${m.id}: no .onnx file in its manifest; nothing to open with onnxruntime`);
    for (const file of files) {
      const session = await ort.InferenceSession.create(file, { executionProviders: device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'] });
      sessions.push({ id: m.id, file, inputs: session.inputNames, outputs: session.outputNames });
      log(`onnxruntime opened ${m.id}: ${file} (inputs: ${session.inputNames.join(', ')}; outputs: ${session.outputNames.join(', ')})`);
    }
  }
  const server: Server = createServer((req, res) => {
    const body = req.url === '/health' ? { ok: true, models: sessions } : { error: 'not found', see: '/health' };
    res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (finish = r));
  await new Promise<void>((resolve) => server.listen(port, resolve));
  log(`serving ${sessions.length} ONNX model(s) on :${port} (/health)`);
  return { models, done, stop: () => server.close(() => finish(0)) };
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
