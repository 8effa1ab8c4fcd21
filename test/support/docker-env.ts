// Test side of docker-env.sh: start (or reuse) the private engine + registry, point this process at
// them, and stop at the end only what this call started. Also small wrappers around the 20.10 CLI.
import { execFile, spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedModels } from './cli.js';
import { writeBertFolder } from './onnx-bert.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = join(REPO_ROOT, 'test', 'support', 'docker-env.sh');
/** The Debian 20.10 client (BuildKit built in); /usr/local/bin/docker is a 28.x without buildx. */
export const DOCKER_CLI = '/usr/bin/docker';

export interface DockerTestEnv {
  env: Record<string, string>;
  registry: string;
  stop(): void;
}

/** Starts what is missing (first run: apt packages, debootstrap, llama-server build: minutes). */
export function startDockerEnv(): DockerTestEnv {
  const r = spawnSync('bash', [SCRIPT, 'start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 30 * 60_000 });
  if (r.status !== 0) throw new Error(`docker-env.sh start failed (exit ${r.status}); see its messages above`);
  const env: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  const started = (env.BAKE_TEST_DOCKER_STARTED ?? '').split(/\s+/).filter(Boolean);
  delete env.BAKE_TEST_DOCKER_STARTED;
  Object.assign(process.env, env);
  return {
    env,
    registry: env.BAKE_TEST_REGISTRY!,
    stop() {
      if (started.length) spawnSync('bash', [SCRIPT, 'stop', ...started], { stdio: 'inherit' });
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the docker CLI against the test engine (DOCKER_HOST from the environment). */
export function docker(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(DOCKER_CLI, args, { cwd: opts.cwd, env: { ...process.env, DOCKER_BUILDKIT: '1', ...opts.env }, maxBuffer: 256 << 20, timeout: opts.timeoutMs ?? 10 * 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

export async function dockerOk(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<string> {
  const r = await docker(args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** Runs a container detached and waits until its logs match `until` (or it exits / times out). */
export async function runUntil(args: string[], until: RegExp, timeoutMs = 60_000): Promise<{ id: string; logs: string; exited: boolean }> {
  const id = (await dockerOk(['run', '-d', ...args])).trim();
  const t0 = Date.now();
  let logs = '';
  for (;;) {
    const r = await docker(['logs', id]);
    logs = r.stdout + r.stderr;
    if (until.test(logs)) return { id, logs, exited: false };
    const state = (await docker(['inspect', '-f', '{{.State.Running}}', id])).stdout.trim();
    if (state !== 'true') {
      const again = await docker(['logs', id]);
      return { id, logs: again.stdout + again.stderr, exited: true };
    }
    if (Date.now() - t0 > timeoutMs) return { id, logs, exited: false };
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const STORIES_HF = join(sharedModels(), 'stories260K', 'hf');
export const VAD_ONNX = join(sharedModels(), 'silero-vad', 'silero_vad_16k_op15.onnx');

/**
 * The recipe the docker tests build: two ONNX models served by bake's runtime (cpu, and cuda on a
 * stand-in base) and a GGUF one served by llama-server (llamacpp).
 */
export const TWO_RECIPE = `# docker tests: ONNX models behind the onnx server, a GGUF one behind llama-server
description: ONNX and GGUF models, three targets (docker tests)
image:
  name: bake.test/two
  version: 1.0.0
models:
  - id: vad
    path: ../models/vad
    files: ["*.onnx", README.md]
    quantize: { format: none }
  - id: encoder
    path: ../models/encoder
    task: feature-extraction
    quantize: { format: onnx-int8 }
    verify: { min_cosine: 0.9 }
  - id: stories
    path: ../models/stories
    files: ["*.json", model.safetensors, tokenizer.model]
    quantize: { format: gguf, type: Q8_0 }
    verify: { skip: true }
targets:
  cpu:
    server: { kind: onnx, port: 8080 }
    models: [vad, encoder]
  llamacpp:
    server: { kind: llama-server, port: 8080 }
    models: [stories]
  cuda:
    server: { kind: onnx, device: cuda }
    models: [vad, encoder]
`;

/** A throwaway project (recipes/two.yaml, models/, models.lock) in a temp folder. */
export async function makeTwoModelProject(prefix = 'bake-docker-'): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await mkdir(join(dir, 'recipes'), { recursive: true });
  await mkdir(join(dir, 'models', 'vad'), { recursive: true });
  await cp(VAD_ONNX, join(dir, 'models', 'vad', 'silero_vad_16k_op15.onnx'));
  await writeFile(join(dir, 'models', 'vad', 'README.md'), 'silero VAD 16 kHz, opset 15 (MIT)\n');
  await writeBertFolder(join(dir, 'models', 'encoder'), { hidden: 32, layers: 1, heads: 2, intermediate: 64 });
  await mkdir(join(dir, 'models', 'stories'), { recursive: true });
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.model', 'tokenizer_config.json']) {
    await cp(join(STORIES_HF, f), join(dir, 'models', 'stories', f));
  }
  await writeFile(join(dir, 'recipes', 'two.yaml'), TWO_RECIPE);
  await bakeCliOk(['-C', dir, 'lock', 'two'], dir);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function bakeCli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(REPO_ROOT, 'bin', 'bake.js'), ...args], { cwd, env: { ...process.env, ...env }, maxBuffer: 64 << 20, timeout: 20 * 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

export async function bakeCliOk(args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  const r = await bakeCli(args, cwd, env);
  if (r.code !== 0) throw new Error(`bake ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}
