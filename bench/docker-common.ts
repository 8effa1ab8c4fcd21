// Shared set-up for the docker benchmarks: the private engine, a loopback Hub serving big generated
// models, and a project whose recipes pin them. Run through the README's bench command (or directly:
// `node --import tsx bench/docker-rebuild.ts`).
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { startHubServer, type HubServer } from '../test/support/hub-server.js';
import { bakeCliOk, startDockerEnv, type DockerTestEnv } from '../test/support/docker-env.js';

export const BASES = {
  BASE_IMAGE_CPU: 'local/node:20-bookworm-slim',
  BASE_IMAGE_LLAMACPP: 'local/llama-server:bookworm',
  BASE_IMAGE_CUDA: 'local/vllm-openai:stand-in',
};
export const NODE_IMAGE = 'local/node:20-bookworm-slim';
export const MB = 1 << 20;

/** A deterministic pseudo-random file (xorshift32), written once and kept between runs. */
export async function generatedFile(path: string, size: number, seed: number): Promise<string> {
  const have = await stat(path).catch(() => undefined);
  if (have?.size === size) return path;
  await mkdir(join(path, '..'), { recursive: true });
  const out = createWriteStream(path);
  let x = seed >>> 0 || 1;
  const chunk = Buffer.alloc(4 * MB);
  for (let written = 0; written < size; written += chunk.length) {
    for (let i = 0; i < chunk.length; i += 4) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      chunk.writeUInt32LE(x, i);
    }
    if (!out.write(written + chunk.length > size ? chunk.subarray(0, size - written) : chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return path;
}

export interface BenchProject {
  dir: string;
  hub: HubServer;
  env: DockerTestEnv;
  /** Recipe name per model size in MB. */
  recipes: Record<number, string>;
  close(): Promise<void>;
}

/** One recipe per size: a single Hub model (format none: the bytes themselves are the model). */
export async function benchProject(sizesMb: number[]): Promise<BenchProject> {
  const env = startDockerEnv();
  const data = process.env.BAKE_BENCH_DATA ?? '/var/tmp/bake-bench';
  const repos: Record<string, { files: Record<string, { file: string }> }> = {};
  for (const mb of sizesMb) {
    repos[`bench/m${mb}`] = { files: { 'weights.gguf': { file: await generatedFile(join(data, `m${mb}.bin`), mb * MB, mb) } } };
  }
  const hub = await startHubServer({ repos });
  const dir = await mkdtemp(join(tmpdir(), 'bake-bench-docker-'));
  await mkdir(join(dir, 'recipes'));
  const recipes: Record<number, string> = {};
  for (const mb of sizesMb) {
    const name = `bench-m${mb}`;
    recipes[mb] = name;
    await writeFile(join(dir, 'recipes', `${name}.yaml`), [
      `description: one ${mb} MB model from the loopback Hub`,
      'image:',
      `  name: bake.bench/m${mb}`,
      '  version: 1.0.0',
      'models:',
      `  - id: m${mb}`,
      `    repo: bench/m${mb}`,
      '    revision: main',
      '    files: [weights.gguf]',
      '    quantize: { format: none }',
      'targets:',
      '  cpu: {}',
      '',
    ].join('\n'));
    await bakeCliOk(['-C', dir, 'lock', name], dir, { HF_ENDPOINT: hub.url });
  }
  return {
    dir,
    hub,
    env,
    recipes,
    async close() {
      await hub.close();
      await rm(dir, { recursive: true, force: true });
      env.stop();
    },
  };
}

export { median } from './args.js';
