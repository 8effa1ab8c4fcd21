// The llama-servers a benchmark measures: the target's image run on the Docker engine (host network,
// its port from BAKE_PORT, as the runtime contract reads it), the same llama-server started from a host
// folder (bench/llamacpp-ttft.ts), or a server already running at a URL (nothing to start or stop).
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type Docker from 'dockerode';
import { RUNTIME_ENV } from '../runtime/contract.js';
import { EngineError, NetworkError } from '../util/errors.js';

export interface RunningServer {
  url: string;
  /** Peak resident memory of the llama-server process, when it can be read. */
  rss(): Promise<number | undefined>;
  /** The llama-server process's id on this host, when known (CPU time, memory from /proc). */
  pid(): Promise<number | undefined>;
  stop(): Promise<void>;
  /** What ran (for the report). */
  describe: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Waits until GET <url>/health answers 200 (llama-server answers 503 while it loads). */
export async function waitHealthy(url: string, timeoutMs: number, alive: () => Promise<string | undefined>): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const ok = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200, () => false);
    if (ok) return;
    const dead = await alive();
    if (dead) throw new NetworkError(`the server for ${url} stopped before it was healthy: ${dead}`, { url });
    if (Date.now() - t0 > timeoutMs) throw new NetworkError(`${url}/health did not answer 200 within ${Math.round(timeoutMs / 1000)} s`, { url });
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Peak (VmHWM) else current (VmRSS) resident bytes of a host process, from /proc. */
export async function processRss(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const kb = status && (/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  return kb ? Number(kb) * 1024 : undefined;
}

/** A server already running: measured as it is. */
export function urlServer(url: string): RunningServer {
  return { url: url.replace(/\/+$/, ''), rss: async () => undefined, pid: async () => undefined, stop: async () => {}, describe: url };
}

/** llama-server from a host folder on a GGUF (the reference the baked image is compared with). */
export async function startLocalServer(opts: { bin: string; gguf: string; args: string[]; timeoutMs?: number }): Promise<RunningServer> {
  const port = await freePort();
  const child = spawn(opts.bin, ['-m', opts.gguf, '--host', '127.0.0.1', '--port', String(port), ...opts.args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(url, opts.timeoutMs ?? 120_000, async () => (child.exitCode !== null ? `exit ${child.exitCode}: ${log.slice(-800)}` : undefined));
  } catch (err) {
    child.kill();
    throw err;
  }
  return {
    url,
    describe: `${opts.bin} -m ${opts.gguf}`,
    rss: () => processRss(child.pid!),
    pid: async () => child.pid,
    stop: async () => {
      if (child.exitCode === null) child.kill();
      await exited;
    },
  };
}

/** The container's llama-server process as `ps` shows it: [host pid, rss KiB, command]. */
async function llamaServerRow(container: Docker.Container): Promise<string[] | undefined> {
  const top = (await container.top({ ps_args: '-o pid,rss,comm' })) as { Titles: string[]; Processes: string[][] };
  return top.Processes.find((p) => /llama-server/.test(p[2] ?? ''));
}

/** CPU seconds (user + system) a host process has used, from /proc/<pid>/stat. */
export async function processCpuSeconds(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat (utime, stime), counted after the command's closing parenthesis; USER_HZ is 100 on Linux.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The target's image on the engine, with `args` as its CMD (the settings under test). */
export async function startImageServer(opts: { docker: Docker; image: string; args: string[]; timeoutMs?: number }): Promise<RunningServer> {
  const port = await freePort();
  let container: Docker.Container;
  try {
    container = await opts.docker.createContainer({
      Image: opts.image,
      Cmd: opts.args,
      Env: [`${RUNTIME_ENV.port}=${port}`],
      Labels: { 'dev.bake.bench': 'true' },
      // The host's network: the same loopback path as a server started on the host. The engine's memlock
      // limit stays (raising it needs CAP_SYS_RESOURCE): a model larger than it runs unlocked, llama.cpp warns.
      HostConfig: { NetworkMode: 'host' },
    });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    throw new EngineError(status === 404 ? `image ${opts.image} is not on the engine` : `could not create a container of ${opts.image}: ${(err as Error).message}`, {
      hint: status === 404 ? 'build it first (bake build <recipe> --target <target>), or name another with --image' : undefined, cause: err,
    });
  }
  const remove = async (): Promise<void> => { await container.remove({ force: true }).catch(() => undefined); };
  const url = `http://127.0.0.1:${port}`;
  try {
    await container.start();
    await waitHealthy(url, opts.timeoutMs ?? 180_000, async () => {
      const s = await container.inspect();
      if (s.State.Running) return undefined;
      const logs = (await container.logs({ stdout: true, stderr: true, tail: 20 })).toString('latin1');
      return `exit ${s.State.ExitCode}: ${logs.replace(/[\x00-\x08]/g, '').slice(-1000)}`;
    });
  } catch (err) {
    await remove();
    throw err;
  }
  return {
    url,
    describe: `${opts.image} ${opts.args.join(' ')}`.trim(),
    rss: async () => {
      const row = await llamaServerRow(container);
      if (!row) return undefined;
      return (await processRss(Number(row[0]))) ?? Number(row[1]) * 1024;
    },
    pid: async () => {
      const row = await llamaServerRow(container);
      return row ? Number(row[0]) : undefined;
    },
    stop: remove,
  };
}
