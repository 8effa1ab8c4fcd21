// Benchmark: parallel Range downloads against a CDN that limits each connection (the test Hub's
// connectionBytesPerSecond), over loopback. bake with 1, 2, 4, 8 (...) connections against curl in the
// same run: one connection, and N ranges in parallel (`curl --parallel`, one file per range: the same
// transfer with no hashing, no verification, no assembly). N connections should be ~N times as fast as
// one, up to the link (here: loopback and the two cores).
//   node --import tsx bench/hub-parallel.ts [--size-mb 256] [--rate-mb 32] [--connections 1,2,4,8] [--runs 3]
// Each figure is the median of --runs runs, the tools alternating; wall, CPU and peak RSS. Prints a
// table and, last, one JSON line.
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { hubConfigFromEnv } from '../src/hub/config.js';
import { resolveUrl } from '../src/hub/files.js';
import { snapshotPath } from '../src/hub/pull.js';
import { resolveHubModel } from '../src/lock/resolve.js';
import type { LockEntry } from '../src/lock/types.js';
import { incompressibleFile, median, numberOption } from './args.js';
import { compileBench, timedRun } from './compile.js';

const args = process.argv.slice(2);
const sizeMb = numberOption('size-mb', 256);
const rateMb = numberOption('rate-mb', 32);
const runs = numberOption('runs', 3);
// One connection is always measured: the speed-ups are over it.
const counts = [...new Set([1, ...(args.includes('--connections') ? args[args.indexOf('--connections') + 1]! : '1,2,4,8').split(',').map(Number)])].sort((a, b) => a - b);
const SIZE = sizeMb * 1024 * 1024;
const RATE = rateMb * 1024 * 1024;
const CURL = '/usr/bin/curl';

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

const work = await mkdtemp(join(tmpdir(), 'bake-bench-parallel-'));
const source = join(work, 'source.bin');
await incompressibleFile(source, SIZE);
const server = fork(new URL('./hub-serve.ts', import.meta.url).pathname, [source, '--rate', String(RATE)], {
  execArgv: ['--import', 'tsx'],
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
try {
  const ready = await new Promise<{ url: string; commit: string }>((resolve, reject) => {
    server.once('message', (m: { type: string; url: string; commit: string }) => (m.type === 'ready' ? resolve(m) : reject(new Error('bad message'))));
    server.once('exit', (code) => reject(new Error(`hub-serve exited with ${code}`)));
  });
  const cfg = hubConfigFromEnv({ HF_TOKEN_PATH: '/nonexistent/token' }, { endpoint: ready.url, cacheDir: join(work, 'lock-cache') });
  const spec = { id: 'big', repo: 'bench/big', revision: 'main', files: ['*'], allow_pickle: [], quantize: { format: 'none' as const }, verify: {} };
  const entry: LockEntry = { ...(await resolveHubModel(spec, cfg)), fragment: 'bench' };
  const expected = entry.files[0]!.sha256;
  const url = resolveUrl(cfg, 'bench/big', ready.commit, 'big.safetensors');
  const entryFile = join(work, 'entry.json');
  await writeFile(entryFile, JSON.stringify(entry));
  const [runner] = await compileBench('hub', ['bench/hub-download-run.ts']);

  type Sample = { ms: number; cpuMs: number; rss: number };
  const samples = new Map<string, Sample[]>();
  const add = (key: string, s: Sample) => samples.set(key, [...(samples.get(key) ?? []), s]);

  const curl = async (n: number, run: number) => {
    // N ranges at once, each into its own file (curl does not assemble or verify them).
    const step = Math.ceil(SIZE / n);
    const curlArgs = ['-sS', '-f', '-L', '--parallel', '--parallel-immediate', '--parallel-max', String(n)];
    const parts: string[] = [];
    for (let k = 0; k < n; k++) {
      const out = join(work, `curl-${run}-${k}.bin`);
      parts.push(out);
      if (n > 1) curlArgs.push('-r', `${k * step}-${Math.min(SIZE, (k + 1) * step) - 1}`);
      curlArgs.push('-o', out, url);
    }
    const r = await timedRun(CURL, curlArgs);
    let got = 0;
    for (const p of parts) got += (await stat(p)).size;
    if (got !== SIZE) throw new Error(`curl with ${n} ranges fetched ${got} bytes`);
    for (const p of parts) await rm(p, { force: true });
    add(`curl ${n}`, { ms: r.seconds * 1000, cpuMs: r.cpuSeconds * 1000, rss: r.rss });
  };
  const bake = async (n: number, run: number) => {
    const cache = join(work, `bake-${run}-${n}`);
    const r = await timedRun(process.execPath, [runner!, entryFile, ready.url, cache, String(n)]);
    const report = JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; cpuSeconds: number; downloadedBytes: number };
    if (report.downloadedBytes !== SIZE) throw new Error(`bake with ${n} connections downloaded ${report.downloadedBytes} bytes`);
    // Verified by bake already; checked once more here, outside the measurement.
    const file = join(snapshotPath(hubConfigFromEnv({ HF_TOKEN_PATH: '/x' }, { endpoint: ready.url, cacheDir: cache }), 'bench/big', ready.commit), 'big.safetensors');
    if ((await sha256Of(file)) !== expected) throw new Error(`bake with ${n} connections wrote other bytes`);
    await rm(cache, { recursive: true, force: true });
    add(`bake ${n}`, { ms: report.seconds * 1000, cpuMs: report.cpuSeconds * 1000, rss: r.rss });
  };

  for (let run = 0; run < runs; run++) {
    const jobs: (() => Promise<void>)[] = [];
    for (const n of counts) jobs.push(() => curl(n, run), () => bake(n, run));
    // Alternate: odd runs go the other way round.
    if (run % 2 === 1) jobs.reverse();
    for (const job of jobs) await job();
  }

  const med = (key: string, f: (s: Sample) => number) => median(samples.get(key)!.map(f));
  const mibs = (ms: number) => SIZE / (1024 * 1024) / (ms / 1000);
  const bake1 = med('bake 1', (s) => s.ms);
  const rows = counts.map((n) => ({
    connections: n,
    curlMs: Math.round(med(`curl ${n}`, (s) => s.ms)),
    bakeMs: Math.round(med(`bake ${n}`, (s) => s.ms)),
    bakeCpuMs: Math.round(med(`bake ${n}`, (s) => s.cpuMs)),
    curlCpuMs: Math.round(med(`curl ${n}`, (s) => s.cpuMs)),
    bakeRssMb: Math.round(med(`bake ${n}`, (s) => s.rss) / 1e6),
    curlRssMb: Math.round(med(`curl ${n}`, (s) => s.rss) / 1e6),
  }));
  console.log(`${sizeMb} MiB from a test Hub limiting each connection to ${rateMb} MiB/s; median of ${runs} alternating runs; load average ${loadavg()[0]!.toFixed(2)}`);
  console.log('| connections | curl ms | bake ms | speed vs curl | bake speed-up over 1 connection | bake MiB/s | bake CPU ms | curl CPU ms | bake RSS MB | curl RSS MB |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.connections} | ${r.curlMs} | ${r.bakeMs} | ${(r.curlMs / r.bakeMs).toFixed(2)} | ${(bake1 / r.bakeMs).toFixed(2)} | ${mibs(r.bakeMs).toFixed(0)} | ${r.bakeCpuMs} | ${r.curlCpuMs} | ${r.bakeRssMb} | ${r.curlRssMb} |`);
  }
  console.log(JSON.stringify({ bench: 'hub-parallel', sizeBytes: SIZE, rateBytesPerConnection: RATE, runs, loadAverage1m: Number(loadavg()[0]!.toFixed(2)), rows: rows.map((r) => ({ ...r, speedVsCurl: Number((r.curlMs / r.bakeMs).toFixed(3)), speedupOverOne: Number((bake1 / r.bakeMs).toFixed(3)) })) }));
} finally {
  if (server.connected) server.send({ type: 'close' });
  await once(server, 'exit').catch(() => undefined);
  await rm(work, { recursive: true, force: true });
}
