// Runs the `bake` CLI as a user would: a child process, its exit code, stdout and stderr.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(projectRoot, 'bin', 'bake.js');

export function bake(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(process.execPath, [bin, ...args], { cwd: opts.cwd ?? projectRoot, env: { ...process.env, ...opts.env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/**
 * The shared test models: ../shared/models beside the clone (as CI lays it out), else /work/shared/models.
 * When neither exists it still returns the first, so tests that need them fail naming that path.
 */
export function sharedModels(): string {
  const candidates = [join(projectRoot, '..', 'shared', 'models'), '/work/shared/models'];
  return candidates.find((dir) => existsSync(join(dir, 'README.md'))) ?? candidates[0]!;
}
