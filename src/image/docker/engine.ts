// The Docker engine through dockerode: connect (DOCKER_HOST or the default socket), check it answers,
// build with BuildKit from a context stream with live progress, inspect and tag images.
import Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { BakeError, EngineError, InputError } from '../../util/errors.js';
import { decodeStreamLine, type BuildEvent } from './progress.js';
import { engineAddress, parseDockerHost } from './host.js';
import { openSession } from './session.js';

export type { BuildEvent } from './progress.js';

export { engineAddress };

export function connectEngine(env: NodeJS.ProcessEnv = process.env): Docker {
  const e = parseDockerHost(env);
  if (e.kind === 'unix') return new Docker({ socketPath: e.socketPath });
  return new Docker({ host: e.host, port: e.port, protocol: e.tls ? 'https' : 'http', ...(e.tls ?? {}) });
}

const START_HINT =
  'start one (`sudo systemctl start docker`, or `sudo dockerd --iptables=false --bridge=none &` where systemd is absent; ' +
  'the tests use test/support/docker-env.sh start) or point DOCKER_HOST at a running engine';

/** Pings the engine; a clear EngineError when nothing answers. Returns its version. */
export async function pingEngine(docker: Docker = connectEngine(), env: NodeJS.ProcessEnv = process.env): Promise<{ version: string; apiVersion: string }> {
  const where = engineAddress(env);
  try {
    await withTimeout(docker.ping(), 10_000, `the engine at ${where} did not answer a ping within 10 s`);
    const v = await docker.version();
    return { version: v.Version, apiVersion: v.ApiVersion };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'the socket does not exist'
      : code === 'ECONNREFUSED' ? 'the connection was refused'
      : code === 'EACCES' ? 'permission denied on the socket (add your user to the docker group, or run as root)'
      : (err as Error).message;
    throw new EngineError(`no Docker engine answers at ${where}: ${why}`, { field: 'DOCKER_HOST', hint: START_HINT, cause: err });
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export interface EngineBuildOptions {
  /** The tar stream of the context (see packContext). */
  context: Readable;
  /** Path of the Dockerfile inside the context. */
  dockerfile: string;
  tags: string[];
  /** Final stage to build (`docker build --target`). */
  target?: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  /** RUN steps' network: the engines here have no bridge, so none or host. */
  network?: 'none' | 'host';
  noCache?: boolean;
  /** BuildKit secrets by id (`RUN --mount=type=secret,id=<id>`), served through the build session. */
  secrets?: Record<string, Uint8Array>;
  onEvent?: (e: BuildEvent) => void;
  signal?: AbortSignal;
}

/** Builds with BuildKit; resolves with the image id once the engine reports it, throws EngineError otherwise. */
export async function buildImage(docker: Docker, opts: EngineBuildOptions): Promise<{ imageId: string; logTail: string[] }> {
  // Our own session (secrets + health), not dockerode's: see session.ts.
  const session = await openSession(opts.secrets ?? {});
  let stream: NodeJS.ReadableStream;
  try {
    stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) => {
      docker.modem.dial(
        {
          path: '/build?',
          method: 'POST',
          file: opts.context,
          options: {
            t: opts.tags[0],
            dockerfile: opts.dockerfile,
            target: opts.target,
            buildargs: opts.buildArgs ? JSON.stringify(opts.buildArgs) : undefined,
            labels: opts.labels ? JSON.stringify(opts.labels) : undefined,
            networkmode: opts.network ?? 'none',
            nocache: opts.noCache,
            version: '2',
            session: session.id,
          },
          abortSignal: opts.signal,
          isStream: true,
          statusCodes: { 200: true, 400: 'bad parameter', 500: 'server error' },
        },
        (err: unknown, data: unknown) => (err ? reject(err) : resolve(data as NodeJS.ReadableStream)),
      );
    });
  } catch (err) {
    session.close();
    // A context that could not be packed (missing path...) is the caller's error, not the engine's.
    if (err instanceof BakeError) throw err;
    throw new EngineError(`the engine refused the build: ${(err as Error).message}`, { cause: err });
  }
  const onEvent = opts.onEvent ?? (() => {});
  let imageId: string | undefined;
  let error: string | undefined;
  // The last lines of RUN output, so a failure can say what the failing step printed.
  const logTail: string[] = [];
  const stepErrors: string[] = [];
  const handle = (e: BuildEvent): void => {
    if (e.type === 'image') imageId = e.imageId;
    if (e.type === 'log') {
      logTail.push(...e.text.split('\n').filter((l) => l.trim()));
      if (logTail.length > 40) logTail.splice(0, logTail.length - 40);
    }
    if (e.type === 'step' && e.step.error) stepErrors.push(`${e.step.name}: ${e.step.error}`);
    onEvent(e);
  };
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    stream.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const text = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!text) continue;
        let line: Record<string, unknown>;
        try {
          line = JSON.parse(text) as Record<string, unknown>;
        } catch {
          continue;
        }
        const decoded = decodeStreamLine(line);
        if (decoded.error) error ??= decoded.error;
        for (const e of decoded.events) handle(e);
      }
    });
    stream.on('end', () => resolve());
    stream.on('error', (err: Error) => reject(new EngineError(`the build stream broke: ${err.message}`, { cause: err })));
  }).finally(() => session.close());
  if (!error && imageId) for (const extra of opts.tags.slice(1)) await tagImage(docker, imageId, extra);
  if (error || !imageId) {
    const details = [...new Set(stepErrors)].join('\n');
    throw new BuildFailedError(error ?? 'the engine ended the build without an image id', details, logTail);
  }
  return { imageId, logTail };
}

/** A build the engine ran and that failed: carries the failing step and its last output lines. */
export class BuildFailedError extends EngineError {
  readonly logTail: string[];
  constructor(message: string, details: string, logTail: string[], hint?: string) {
    super(`docker build failed: ${message}${details && !message.includes(details) ? `\n${details}` : ''}${logTail.length ? `\nlast output:\n  ${logTail.slice(-15).join('\n  ')}` : ''}`, { hint });
    this.logTail = logTail;
  }
}

export interface ImageFacts {
  id: string;
  size: number;
  /** diff_ids of the layers, bottom first. */
  layers: string[];
  labels: Record<string, string>;
  env: string[];
  entrypoint: string[] | null;
  cmd: string[] | null;
  /** `EXPOSE`d ports, e.g. ["8080/tcp"]. */
  exposedPorts: string[];
  /** HEALTHCHECK test (["CMD", ...]) and its timings in seconds. */
  healthcheck?: { test: string[]; interval: number; timeout: number; startPeriod: number; retries: number };
  history: { createdBy: string; empty: boolean }[];
}

export async function inspectImage(docker: Docker, ref: string): Promise<ImageFacts | undefined> {
  try {
    const info = await docker.getImage(ref).inspect();
    const history = (await docker.getImage(ref).history()) as { CreatedBy: string; Size: number }[];
    const hc = (info.Config as { Healthcheck?: { Test?: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; Retries?: number } } | undefined)?.Healthcheck;
    return {
      id: info.Id,
      size: info.Size,
      layers: info.RootFS?.Layers ?? [],
      labels: info.Config?.Labels ?? {},
      env: info.Config?.Env ?? [],
      entrypoint: (info.Config?.Entrypoint as string[] | null | undefined) ?? null,
      cmd: (info.Config?.Cmd as string[] | null | undefined) ?? null,
      exposedPorts: Object.keys(info.Config?.ExposedPorts ?? {}).sort(),
      ...(hc?.Test ? { healthcheck: { test: hc.Test, interval: (hc.Interval ?? 0) / 1e9, timeout: (hc.Timeout ?? 0) / 1e9, startPeriod: (hc.StartPeriod ?? 0) / 1e9, retries: hc.Retries ?? 0 } } : {}),
      history: history.reverse().map((h) => ({ createdBy: h.CreatedBy, empty: h.Size === 0 })),
    };
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw new EngineError(`could not inspect image ${ref}: ${(err as Error).message}`, { cause: err });
  }
}

export async function hasImage(docker: Docker, ref: string): Promise<boolean> {
  return (await inspectImage(docker, ref)) !== undefined;
}

export async function tagImage(docker: Docker, ref: string, newRef: string): Promise<void> {
  const at = newRef.lastIndexOf(':');
  const [repo, tag] = at > newRef.lastIndexOf('/') ? [newRef.slice(0, at), newRef.slice(at + 1)] : [newRef, 'latest'];
  try {
    await docker.getImage(ref).tag({ repo, tag });
  } catch (err) {
    throw new EngineError(`could not tag ${ref} as ${newRef}: ${(err as Error).message}`, { cause: err });
  }
}

/** Pushes `ref` (already tagged with its registry) through the engine; resolves with the pushed digest. */
export async function pushImage(docker: Docker, ref: string, onEvent?: (e: BuildEvent) => void): Promise<{ digest: string }> {
  const at = ref.lastIndexOf(':');
  const tag = at > ref.lastIndexOf('/') ? ref.slice(at + 1) : 'latest';
  let stream: NodeJS.ReadableStream;
  try {
    // authconfig {}: the engine wants the header even for registries without auth.
    stream = await docker.getImage(ref).push({ tag, authconfig: {} } as Docker.ImagePushOptions);
  } catch (err) {
    throw new EngineError(`could not push ${ref}: ${(err as Error).message}`, { cause: err });
  }
  let digest: string | undefined;
  let error: string | undefined;
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err: Error | null) => (err ? reject(err) : resolve()),
      (line: Record<string, unknown>) => {
        if (typeof line.error === 'string') error ??= line.error;
        const aux = line.aux as { Digest?: string } | undefined;
        if (aux?.Digest) digest = aux.Digest;
        if (typeof line.status === 'string') onEvent?.({ type: 'message', text: `${line.id ? `${String(line.id)}: ` : ''}${line.status}${line.progress ? ` ${String(line.progress)}` : ''}` });
      },
    );
  }).catch((err: Error) => {
    error ??= err.message;
  });
  if (error || !digest) {
    throw new EngineError(`could not push ${ref}: ${error ?? 'the engine reported no digest'}`, {
      hint: 'check that the registry answers (`curl http://<registry>/v2/`); a registry without TLS must be on loopback or in the engine\'s insecure-registries',
    });
  }
  return { digest };
}
