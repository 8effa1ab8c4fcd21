// Does baking cost anything at serve time? Time to first token of the baked chat image of
// recipes/chat-llamacpp.yaml against the same llama-server binary (scripts/llama-tools.sh, the one the
// image's base carries) started from a host folder on the same GGUF with the same flags. Both on this
// host's network, measured alternately with the same workload (src/tune); per side: TTFT p50/p95 (client
// clock), generation tokens/s (llama-server's timings), CPU seconds and peak RSS of the llama-server
// process. The ratio image/host should be ~1.0.
//   bash test/support/docker-env.sh run -- node --import tsx bench/llamacpp-ttft.ts [--runs 3] [--requests 16] [--concurrency 1] [--max-tokens 16]
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectEngine } from '../src/image/docker/index.js';
import { loadRecipe } from '../src/recipe/load.js';
import { serverArgs } from '../src/runtime/contract.js';
import { measure, processCpuSeconds, startImageServer, startLocalServer, workload, type RunningServer } from '../src/tune/index.js';
import { bakeCliOk, dockerOk, REPO_ROOT, startDockerEnv } from '../test/support/docker-env.js';
import { fleetHubRepos } from '../test/support/fleet-models.js';
import { llamaToolsBin } from '../test/support/gguf-fixtures.js';
import { startHubServer } from '../test/support/hub-server.js';
import { median, numberOption } from './args.js';

const run = promisify(execFile);
const runs = numberOption('runs', 3);
const w = workload('chat', { requests: numberOption('requests', 16), concurrency: numberOption('concurrency', 1), maxTokens: numberOption('max-tokens', 16) });
const TARGET = 'chat';

const env = startDockerEnv();
const dir = await mkdtemp(join(tmpdir(), 'bake-ttft-'));
const hub = await startHubServer({ repos: await fleetHubRepos(join(dir, 'hub-models')) });
try {
  await mkdir(join(dir, 'recipes'));
  await cp(join(REPO_ROOT, 'recipes', 'chat-llamacpp.yaml'), join(dir, 'recipes', 'chat-llamacpp.yaml'));
  await cp(join(REPO_ROOT, 'models.lock'), join(dir, 'models.lock'));
  const bakeEnv = { HF_ENDPOINT: hub.url, HF_HOME: join(dir, 'hf'), BAKE_STORE: join(dir, 'store'), HF_TOKEN_PATH: '/nonexistent', SOURCE_DATE_EPOCH: '1700000000' };
  const base = `${env.registry}/bake-bench/llama-server:bookworm`;
  await dockerOk(['tag', 'local/llama-server:bookworm', base]);
  await dockerOk(['push', base]);
  // The image, baked daemonless as a user would; the GGUF it carries, materialized into a host folder.
  await bakeCliOk(['-C', dir, 'build', 'chat-llamacpp', '--target', TARGET, '--output', `docker-archive:${join(dir, 'chat.tar')}`, '--base', base], dir, bakeEnv);
  await dockerOk(['load', '-i', join(dir, 'chat.tar')]);
  await bakeCliOk(['-C', dir, 'materialize', 'chat-llamacpp', '--model', TARGET, '--out', join(dir, 'host')], dir, bakeEnv);
  const recipe = await loadRecipe('chat-llamacpp', dir);
  const target = recipe.targets.find((t) => t.name === TARGET)!;
  const args = serverArgs(target.server);
  const gguf = join(dir, 'host', TARGET, `${TARGET}-Q4_K_M.gguf`);
  const bin = join(await llamaToolsBin(), 'llama-server');
  const image = `${recipe.image.name}:${recipe.image.version}-${TARGET}`;
  // llama-server prints its version on stderr.
  const v = await run(bin, ['--version']).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));
  const version = /version: .*/.exec(`${v.stdout}\n${v.stderr}`)?.[0] ?? 'llama-server';

  type Side = 'host' | 'image';
  const results: Record<Side, { ttft50: number[]; ttft95: number[]; gen: number[]; cpu: number[]; rss: number[] }> = {
    host: { ttft50: [], ttft95: [], gen: [], cpu: [], rss: [] },
    image: { ttft50: [], ttft95: [], gen: [], cpu: [], rss: [] },
  };
  const docker = connectEngine();
  for (let r = 0; r < runs; r++) {
    // Alternate which side goes first, so a drift of the machine's load falls on both.
    const order: Side[] = r % 2 ? ['image', 'host'] : ['host', 'image'];
    for (const side of order) {
      const server: RunningServer = side === 'host' ? await startLocalServer({ bin, gguf, args }) : await startImageServer({ docker, image, args });
      try {
        const pid = await server.pid();
        const cpu0 = pid ? (await processCpuSeconds(pid)) ?? 0 : 0;
        const m = await measure(server.url, w);
        const cpu1 = pid ? (await processCpuSeconds(pid)) ?? 0 : 0;
        if (m.errors) throw new Error(`${side}: ${m.errors} requests failed: ${m.error}`);
        const res = results[side];
        res.ttft50.push(m.ttft_p50_ms!);
        res.ttft95.push(m.ttft_p95_ms!);
        res.gen.push(m.gen_tps ?? Number.NaN);
        res.cpu.push(cpu1 - cpu0);
        res.rss.push((await server.rss()) ?? Number.NaN);
      } finally {
        await server.stop();
      }
    }
  }
  const med = (side: Side) => ({
    ttft50: median(results[side].ttft50), ttft95: median(results[side].ttft95), gen: median(results[side].gen), cpu: median(results[side].cpu), rss: median(results[side].rss),
  });
  const h = med('host');
  const i = med('image');
  const rows = [
    ['llama-server', 'ttft p50 ms', 'ttft p95 ms', 'gen tok/s', 'cpu s', 'peak rss MiB'],
    ['host folder', h.ttft50.toFixed(1), h.ttft95.toFixed(1), h.gen.toFixed(1), h.cpu.toFixed(2), (h.rss / 1048576).toFixed(1)],
    ['baked image', i.ttft50.toFixed(1), i.ttft95.toFixed(1), i.gen.toFixed(1), i.cpu.toFixed(2), (i.rss / 1048576).toFixed(1)],
    ['image / host', (i.ttft50 / h.ttft50).toFixed(3), (i.ttft95 / h.ttft95).toFixed(3), (i.gen / h.gen).toFixed(3), (i.cpu / h.cpu).toFixed(3), (i.rss / h.rss).toFixed(3)],
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  process.stdout.write(`TTFT, baked image vs host folder (${TARGET} of chat-llamacpp, Q4_K_M stand-in, CPU; ${version})\n`);
  process.stdout.write(`flags: ${args.join(' ')}\n`);
  process.stdout.write(`${runs} runs each (medians), ${w.requests} streamed chat requests per run, ${w.concurrency} at once, ${w.maxTokens} tokens each\n`);
  for (const row of rows) process.stdout.write(`${row.map((c, k) => c.padEnd(widths[k]!)).join('  ')}\n`);
} finally {
  await hub.close();
  await rm(dir, { recursive: true, force: true });
  env.stop();
}
