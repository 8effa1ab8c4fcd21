// The test side of scripts/host-tools.sh, the one list of programs the project calls and the Debian
// package each comes from: read the list, and stop a test early naming the package of a missing tool.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from './cli.js';

export const HOST_TOOLS = join(projectRoot, 'scripts', 'host-tools.sh');

/** program -> where it comes from: a Debian package, "@<script>" (made by it) or "-" (Node + npm). */
export function hostToolList(): Map<string, string> {
  const r = spawnSync('bash', [HOST_TOOLS, 'list'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bash ${HOST_TOOLS} list failed (exit ${r.status}): ${r.stderr}`);
  return new Map(r.stdout.trim().split('\n').map((line) => line.split('\t') as [string, string]));
}

/** Throws "missing <prog>: install Debian package <pkg> ..." for each listed program not on this machine. */
export function requireHostTools(...programs: string[]): void {
  const r = spawnSync('bash', [HOST_TOOLS, 'check', ...programs], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr.trim() || `bash ${HOST_TOOLS} check failed (exit ${r.status})`);
}
