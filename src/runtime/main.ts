// Entry point of the runtime app inside images (bundled to /opt/bake-runtime/app/bake-runtime.mjs by
// docker/bake.Dockerfile). This is a program, not library code: it prints.
//   bake-runtime serve [-- server args]       load models, then serve them for $BAKE_TARGET
//   bake-runtime check                        load (verify / fetch) models and exit
//   bake-runtime unbundle <model dir> <outdir>  write the manifest of an image without model bytes: the
//                                             model's layer digest, pulled at start from $BAKE_MODELS_REPOSITORY
import { mkdir, readdir, utimes, lutimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BakeError, ExitCode, InputError } from '../util/errors.js';
import { prettyJson } from '../util/json.js';
import { writeFileAtomic } from '../util/fs.js';
import { loadModels } from './load.js';
import { MANIFEST_FILE, readManifest } from './manifest.js';
import { modelLayerOf, unbundledManifest } from './unbundled.js';
import { RUNTIME_ENV } from './contract.js';
import { serve, type RuntimeServer } from './serve.js';

const SERVERS: RuntimeServer[] = ['onnx', 'llama-server', 'vllm'];

async function health(port: number, path: string): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(4000) });
    return res.status === 200 ? 0 : 1;
  } catch {
    return 1;
  }
}

const log = (line: string): void => console.log(`[bake-runtime] ${line}`);

async function setTimes(root: string, epoch: number): Promise<void> {
  const t = new Date(epoch * 1000);
  for (const e of await readdir(root, { withFileTypes: true })) {
    const p = join(root, e.name);
    if (e.isDirectory()) await setTimes(p, epoch);
    if (e.isSymbolicLink()) await lutimes(p, t, t);
    else await utimes(p, t, t);
  }
  await utimes(root, t, t);
}

async function unbundle(modelDir: string, outDir: string): Promise<void> {
  const manifest = await readManifest(join(modelDir, MANIFEST_FILE));
  const repository = process.env.BAKE_MODELS_REPOSITORY?.trim() ?? '';
  if (!/^[^\s/]+\/[a-z0-9._/-]+$/.test(repository)) {
    throw new InputError(`BAKE_MODELS_REPOSITORY is ${JSON.stringify(repository)}, not a registry repository`, { field: 'BAKE_MODELS_REPOSITORY', expected: 'host[:port]/name, where `bake push` pushed the bundled image', hint: '--build-arg BAKE_MODELS_REPOSITORY=<registry>/<repository>' });
  }
  // The same layer `bake push` pushes for this model: same files, same time stamps, same digest.
  const layer = await modelLayerOf(modelDir, manifest.id, Number(process.env.SOURCE_DATE_EPOCH || 0));
  const out = unbundledManifest(manifest, { ...layer, repository });
  await writeFileAtomic(join(outDir, MANIFEST_FILE), prettyJson(out));
  // Fixed times from the top of the copied tree (/out): equal manifests give equal layers.
  let top = outDir;
  while (dirname(top) !== '/' && dirname(top) !== top) top = dirname(top);
  await mkdir(top, { recursive: true });
  await setTimes(top, Number(process.env.SOURCE_DATE_EPOCH || 0));
  log(`${manifest.id}: not bundled; at start the runtime pulls layer ${layer.digest} (${layer.size} bytes) from ${repository}, else quantizes ${manifest.source.repo}@${manifest.source.commit.slice(0, 12)}`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const dash = rest.indexOf('--');
  const extraArgs = dash >= 0 ? rest.slice(dash + 1) : [];
  const ids = process.env.BAKE_MODELS ? process.env.BAKE_MODELS.split(',').filter(Boolean) : undefined;
  switch (cmd) {
    case 'serve': {
      const server = process.env[RUNTIME_ENV.server] ?? '';
      if (!SERVERS.includes(server as RuntimeServer)) throw new InputError(`${RUNTIME_ENV.server} is ${JSON.stringify(server)}`, { field: RUNTIME_ENV.server, expected: SERVERS.join(', '), hint: 'the image sets it; rebuild it with `bake build`' });
      const device = process.env[RUNTIME_ENV.device] === 'cuda' ? 'cuda' : 'cpu';
      const s = await serve({ server: server as RuntimeServer, device, ids, extraArgs, log, check: process.env.BAKE_CHECK === 'size' ? 'size' : 'sha256' });
      for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => s.stop());
      return s.done;
    }
    case 'check':
      await loadModels({ ids, log });
      return 0;
    case 'health':
      // The image's HEALTHCHECK: the server's health path on its port answers 200.
      return health(Number(process.env[RUNTIME_ENV.port] || 8080), process.env[RUNTIME_ENV.healthPath] || '/health');
    case 'unbundle':
      if (rest.length !== 2) throw new InputError('usage: bake-runtime unbundle <model dir> <out dir>');
      await unbundle(rest[0]!, rest[1]!);
      return 0;
    default:
      throw new InputError(`unknown command ${JSON.stringify(cmd ?? '')}`, { expected: 'serve, check, health or unbundle' });
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof BakeError) {
      console.error(`[bake-runtime] error: ${err.message}${err.hint ? `\n  hint: ${err.hint}` : ''}`);
      process.exit(ExitCode[err.exit]);
    }
    console.error(`[bake-runtime] error: ${(err as Error)?.stack ?? String(err)}`);
    process.exit(1);
  },
);
