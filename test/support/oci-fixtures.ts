// Fixtures for the image tests: real model folders copied to temp dirs, and a runner for the
// independent tools (skopeo, umoci, docker) that check what our writers produce.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, utimes, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sharedModels } from './cli.js';
import { requireHostTools } from './host-tools.js';

const exec = promisify(execFile);

export const MODELS = sharedModels();

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `bake-${prefix}-`));
}

/**
 * Copies a real model folder into a fresh temp folder with a manifest.json beside the weights (as
 * the pipeline writes it), giving the copies `mtime` so tests can show mtimes do not leak into layers.
 */
export async function modelFolder(src: string, id: string, mtime: Date = new Date()): Promise<string> {
  const dir = join(await tempDir(`model-${id}`), id);
  await cp(src, dir, { recursive: true });
  await writeFile(join(dir, 'manifest.json'), JSON.stringify({ id, source: src }, null, 2) + '\n');
  for (const name of await readdir(dir)) await utimes(join(dir, name), mtime, mtime);
  await utimes(dir, mtime, mtime);
  return dir;
}

export async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { maxBuffer: 64 * 1024 * 1024, env });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: unknown };
    if (e.code === 'ENOENT') requireHostTools(cmd); // not installed: name its Debian package
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

export async function skopeoInspect(target: string): Promise<{ Digest: string; Layers: string[]; Labels: Record<string, string> | null; Architecture: string; Os: string }> {
  return JSON.parse(await run('skopeo', ['inspect', '--tls-verify=false', target]));
}

export async function skopeoRaw(target: string, config = false): Promise<unknown> {
  return JSON.parse(await run('skopeo', ['inspect', '--tls-verify=false', '--raw', ...(config ? ['--config'] : []), target]));
}
