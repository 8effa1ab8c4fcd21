// The seed's table for the RAG service (e5-base-v2 + bge-reranker-base), measured in one run on the
// private engine against the loopback Hub's stand-ins at the real model sizes (BERT-base ~110M and
// XLM-R-base ~278M parameters, random weights; test/support/rag-models.ts):
//   - container start to /health 200: bundled INT8, bundled fp32, BUNDLE_MODELS=false via the registry,
//     BUNDLE_MODELS=false quantizing at start (what the service does today: download + quantize);
//   - image size without models (the lean image), with fp32 models, with INT8 models;
//   - server RSS after load and under load (the process's own, from /metrics);
//   - /embed throughput and p50/p95 latency, fp32 against INT8, under one fixed concurrent load (autocannon).
// Ratios are against the fp32 / quantize-at-start rows of the same run. The seed reported 45 s -> 2.5 s,
// 2.0 -> 1.4 GB and 1.5 GB -> 420 MB.
//   bash test/support/docker-env.sh run -- node --import tsx bench/rag-service.ts            (real sizes)
//   ... bench/rag-service.ts --size small --duration 3 --runs 1                              (a quick check)
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { loadRecipe } from '../src/recipe/load.js';
import { writeBuildFiles } from '../src/image/dockerfile/index.js';
import { buildTarget, connectEngine, ensureBakeImage, inspectImage } from '../src/image/docker/index.js';
import { startHubServer } from '../test/support/hub-server.js';
import { ragHubRepos, type RagSize } from '../test/support/rag-models.js';
import { freePort } from '../test/support/registry.js';
import { bakeCliOk, docker, dockerOk, REPO_ROOT, startDockerEnv } from '../test/support/docker-env.js';
import { percentile } from '../src/verify/onnx/metrics.js';
import { median, numberOption } from './args.js';

const argv = process.argv.slice(2);
const size = (argv.includes('--size') ? argv[argv.indexOf('--size') + 1] : 'base') as RagSize;
const runs = numberOption('runs', 3);
const duration = numberOption('duration', 15);
const connections = numberOption('connections', 8);
const NODE_IMAGE = 'local/node:20-bookworm-slim';
const BUILDER = 'bake-builder:rag-bench';
const EPOCH = '1700000000';
const BODY = JSON.stringify({ inputs: ['Sunlight is scattered by the molecules of the air, and short blue wavelengths are scattered much more than red ones.'], prompt_name: 'passage' });

const env = startDockerEnv();
const data = process.env.BAKE_BENCH_DATA ?? '/var/tmp/bake-bench';
const hub = await startHubServer({ repos: await ragHubRepos(join(data, 'rag'), size) });
const project = await mkdtemp(join(tmpdir(), 'bake-bench-rag-'));
const registryRepo = `${env.registry}/bake-bench/rag-service`;
const cli = { HF_ENDPOINT: hub.url, HF_HOME: join(project, '.hf'), HF_TOKEN_PATH: '/nonexistent', BAKE_STORE: join(data, 'rag-store'), SOURCE_DATE_EPOCH: EPOCH };

/** ms from `docker run` to the first 200 on /health, polled from the host (host network, own port). */
async function startToHealthy(image: string, extra: string[] = []): Promise<{ ms: number; id: string; port: number }> {
  const port = await freePort();
  const t0 = performance.now();
  const id = (await dockerOk(['run', '-d', '--network', 'host', '-e', `BAKE_PORT=${port}`, ...extra, image])).trim();
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status === 200, () => false);
    if (ok) return { ms: performance.now() - t0, id, port };
    if ((await docker(['inspect', '-f', '{{.State.Running}}', id])).stdout.trim() !== 'true') throw new Error(`${image} stopped:\n${(await docker(['logs', id])).stdout}`);
    if (performance.now() - t0 > 30 * 60_000) throw new Error(`${image}: not healthy after 30 min`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function rss(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(/^bake_process_resident_memory_bytes (\d+)/m.exec(text)?.[1] ?? NaN);
}

/** autocannon on /embed for `duration` s with `connections`; every response time kept (for p95), RSS sampled meanwhile. */
async function load(port: number): Promise<{ rps: number; p50: number; p95: number; rssUnderLoad: number; errors: number }> {
  let peak = 0;
  const sampler = setInterval(() => void rss(port).then((v) => (peak = Math.max(peak, v)), () => {}), 250);
  const times: number[] = [];
  const run = autocannon({ url: `http://127.0.0.1:${port}/embed`, method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY, connections, duration });
  run.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => times.push(ms));
  const r = await run;
  clearInterval(sampler);
  peak = Math.max(peak, await rss(port));
  return { rps: r.requests.average, p50: percentile(times, 0.5), p95: percentile(times, 0.95), rssUnderLoad: peak, errors: r.errors + r.non2xx };
}

const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
const mbs = (n: number) => `${(n / 1e6).toFixed(0)} MB`;

try {
  await mkdir(join(project, 'recipes', 'rag-service'), { recursive: true });
  await cp(join(REPO_ROOT, 'recipes', 'rag-service', 'eval.jsonl'), join(project, 'recipes', 'rag-service', 'eval.jsonl'));
  // Gates skipped here: random weights at the real size are no quality test (the base-size stand-ins measured
  // e5 cosine_min 0.968 / top-1 0.67 and bge spearman 0.88, all from near-identical random outputs); the
  // gates are tested on the small stand-ins (test/verify/onnx/retrieval.test.ts, test/image/docker/rag.test.ts).
  const recipeText = (await readFile(join(REPO_ROOT, 'recipes', 'rag-service.yaml'), 'utf8')).replace(/    verify:\n(      .*\n)+/g, '    verify: { skip: true }\n');
  await writeFile(join(project, 'recipes', 'rag-service.yaml'), recipeText);
  // The same models unquantized: what the image would carry without bake's INT8 step.
  await writeFile(join(project, 'recipes', 'rag-fp32.yaml'), recipeText.replace(/quantize: \{ format: onnx-int8 \}/g, 'quantize: { format: none }').replace('registry.example.com/ml/rag-service', 'bake.bench/rag-fp32'));
  for (const r of ['rag-service', 'rag-fp32']) await bakeCliOk(['-C', project, 'lock', r], project, cli);
  await ensureBakeImage({ docker: connectEngine(), tag: BUILDER, nodeImage: NODE_IMAGE });
  const images: Record<string, string> = {};
  for (const [name, recipeName, bundle] of [['int8', 'rag-service', 'true'], ['fp32', 'rag-fp32', 'true'], ['lean', 'rag-service', 'false']] as const) {
    const recipe = await loadRecipe(recipeName, project);
    const files = await writeBuildFiles({ root: project, recipe, bakeImage: BUILDER });
    const t0 = performance.now();
    images[name] = (await buildTarget({
      recipe, target: 'cpu', contextDir: project, dockerfile: files.dockerfile, tag: `bake.bench/rag:${name}`, network: 'host', ensureBuilder: false,
      buildArgs: { BASE_IMAGE_CPU: NODE_IMAGE, BUNDLE_MODELS: bundle, BAKE_MODELS_REPOSITORY: registryRepo, SOURCE_DATE_EPOCH: EPOCH, HF_ENDPOINT: hub.url, BAKE_IMAGE: BUILDER },
    })).imageId;
    console.error(`built ${name} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  // The bundled INT8 image's model layers, pushed where the lean image pulls them from.
  const base = `${env.registry}/bake-bench/node:20-bookworm-slim`;
  await dockerOk(['tag', NODE_IMAGE, base]);
  await dockerOk(['push', base]);
  await bakeCliOk(['-C', project, 'push', 'rag-service', '--to', registryRepo, '--target', 'cpu', '--base', base], project, cli);

  const sizes: Record<string, number> = {};
  for (const [k, id] of Object.entries(images)) sizes[k] = (await inspectImage(connectEngine(), id))!.size;
  const starts: Record<string, number[]> = { int8: [], fp32: [], registry: [], quantize: [] };
  const kept: Record<string, { id: string; port: number }> = {};
  for (let i = 0; i < runs; i++) {
    for (const [k, image, extra] of [
      ['int8', images.int8!, []],
      ['fp32', images.fp32!, []],
      ['registry', images.lean!, ['-e', 'HF_ENDPOINT=http://127.0.0.1:9']],
      ['quantize', images.lean!, ['-e', `BAKE_MODELS_REGISTRY=${env.registry}/bake-bench/no-such-models`, '-e', `HF_ENDPOINT=${hub.url}`]],
    ] as const) {
      // A fresh container each time: the unbundled ones start with an empty models cache.
      const s = await startToHealthy(image, [...extra]);
      starts[k]!.push(s.ms);
      if (i === runs - 1 && (k === 'int8' || k === 'fp32')) kept[k] = s;
      else await docker(['rm', '-f', s.id]);
    }
  }
  const loads: Record<string, Awaited<ReturnType<typeof load>> & { rssAfterLoad: number }> = {};
  for (const k of ['fp32', 'int8'] as const) {
    const after = await rss(kept[k]!.port);
    loads[k] = { ...(await load(kept[k]!.port)), rssAfterLoad: after };
    await docker(['rm', '-f', kept[k]!.id]);
  }
  const m = Object.fromEntries(Object.entries(starts).map(([k, v]) => [k, median(v)]));
  const rows = [
    ['measure', 'fp32 / today', 'INT8 baked', 'ratio', 'seed (today -> baked)'],
    ['start to /health 200: quantize at start vs bundled INT8', `${(m.quantize! / 1000).toFixed(1)} s`, `${(m.int8! / 1000).toFixed(1)} s`, (m.int8! / m.quantize!).toFixed(3), '45 s -> 2.5 s'],
    ['start to /health 200: bundled fp32 vs bundled INT8', `${(m.fp32! / 1000).toFixed(1)} s`, `${(m.int8! / 1000).toFixed(1)} s`, (m.int8! / m.fp32!).toFixed(3), ''],
    ['start to /health 200: unbundled via registry vs bundled INT8', `${(m.registry! / 1000).toFixed(1)} s`, `${(m.int8! / 1000).toFixed(1)} s`, (m.int8! / m.registry!).toFixed(3), ''],
    ['image size: with fp32 vs with INT8 (without models: ' + gb(sizes.lean!) + ')', gb(sizes.fp32!), gb(sizes.int8!), (sizes.int8! / sizes.fp32!).toFixed(3), '2.0 -> 1.4 GB'],
    ['server RSS after load', mbs(loads.fp32!.rssAfterLoad), mbs(loads.int8!.rssAfterLoad), (loads.int8!.rssAfterLoad / loads.fp32!.rssAfterLoad).toFixed(3), '1.5 GB -> 420 MB'],
    ['server RSS under load', mbs(loads.fp32!.rssUnderLoad), mbs(loads.int8!.rssUnderLoad), (loads.int8!.rssUnderLoad / loads.fp32!.rssUnderLoad).toFixed(3), ''],
    [`/embed req/s (${connections} connections, ${duration} s)`, loads.fp32!.rps.toFixed(1), loads.int8!.rps.toFixed(1), (loads.int8!.rps / loads.fp32!.rps).toFixed(3), ''],
    ['/embed latency p50 ms', loads.fp32!.p50.toFixed(1), loads.int8!.p50.toFixed(1), (loads.int8!.p50 / loads.fp32!.p50).toFixed(3), ''],
    ['/embed latency p95 ms', loads.fp32!.p95.toFixed(1), loads.int8!.p95.toFixed(1), (loads.int8!.p95 / loads.fp32!.p95).toFixed(3), ''],
  ];
  console.log(`RAG service, stand-ins at ${size} size, ${runs} start(s) each (median); errors under load: fp32 ${loads.fp32!.errors}, INT8 ${loads.int8!.errors}`);
  for (const r of rows) console.log(r.join(' | '));
  console.log(`start ms (median): int8 ${m.int8!.toFixed(0)}, fp32 ${m.fp32!.toFixed(0)}, unbundled via registry ${m.registry!.toFixed(0)}, unbundled quantizing at start ${m.quantize!.toFixed(0)}`);
} finally {
  await hub.close();
  await rm(project, { recursive: true, force: true });
  env.stop();
}
