// A private Docker engine for the docker-archive tests: own data, exec root, socket and containerd
// namespace; no iptables, no bridge. Stopped by its PID when the test ends.
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { requireHostTools } from './host-tools.js';
import { run, tempDir } from './oci-fixtures.js';

export const DOCKERD = '/usr/sbin/dockerd';
/** The Debian 20.10 client; /usr/local/bin/docker (28.x) may shadow it on PATH. */
export const DOCKER_CLI = '/usr/bin/docker';

export interface PrivateDocker {
  host: string;
  docker(args: string[]): Promise<string>;
  close(): Promise<void>;
}

export async function startDockerd(): Promise<PrivateDocker> {
  requireHostTools(DOCKERD, DOCKER_CLI);
  const root = await tempDir('dockerd');
  // Unix socket paths must stay short (108 bytes): keep the exec root and socket under /run.
  const run_ = `/run/bake-oci-${process.pid}-${Date.now() % 100000}`;
  await mkdir(run_, { recursive: true });
  const sock = join(run_, 'docker.sock');
  const host = `unix://${sock}`;
  const ns = `bake-oci-${process.pid}`;
  const child = spawn(
    DOCKERD,
    [
      '--data-root', join(root, 'data'), '--exec-root', join(run_, 'exec'), '--pidfile', join(run_, 'dockerd.pid'), '-H', host,
      '--iptables=false', '--ip-masq=false', '--bridge=none', '--storage-driver', 'overlay2',
      '--containerd-namespace', ns, '--containerd-plugins-namespace', `${ns}-plugins`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const docker = (args: string[]) => run(DOCKER_CLI, ['-H', host, ...args]);
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`dockerd exited: ${log}`);
    const ok = await docker(['version', '--format', '{{.Server.Version}}']).then(() => true, () => false);
    if (ok) break;
    if (i > 150) {
      child.kill('SIGTERM');
      throw new Error(`dockerd did not answer within 30 s: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    host,
    docker,
    async close() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 15000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      await rm(run_, { recursive: true, force: true }).catch(() => {});
      await rm(root, { recursive: true, force: true }).catch(() => {});
    },
  };
}
