// Benchmark: bake's Hub download (stream to disk + sha256 + fsync + cache layout) against `curl -L`
// of the same URL in the same run (and against curl plus an fsync of its file, the same durability),
// over loopback from the test Hub (in its own process), and the bytes downloaded again after a cut at 50 %.
// bake runs as a compiled child process: one connection (the figure to compare with curl's one
// connection) and the default (parallel Range parts). Wall time, CPU time (bake's from inside the
// process, start-up excluded) and peak RSS; CPU is also set against its budget: 2x curl's plus one
// sha256 pass over the file (`openssl dgst -sha256`, same SHA extensions as Node's).
//   node --import tsx bench/hub-download.ts [--size-mb 1024] [--runs 3]
// Prints a table and, last, one JSON line.
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { hubConfigFromEnv } from '../src/hub/config.js';
import { pullModel } from '../src/hub/pull.js';
import { resolveHubModel } from '../src/lock/resolve.js';
import { resolveUrl } from '../src/hub/files.js';
import type { LockEntry } from '../src/lock/types.js';
import { incompressibleFile, median, numberOption } from './args.js';
import { compileBench, timedRun } from './compile.js';

const sizeMb = numberOption('size-mb', 1024);
const runs = numberOption('runs', 3);
const SIZE = sizeMb * 1024 * 1024;
const CURL = '/usr/bin/curl';

function ask<T>(child: ChildProcess, msg: object, reply: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: { type: string }) => {
      if (m.type === reply) {
        child.off('message', on);
        resolve(m as T);
      }
    };
    child.on('message', on);
    child.send(msg);
  });
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'bake-bench-hub-'));
  await incompressibleFile(join(work, 'source.bin'), SIZE);
  const server = fork(new URL('./hub-serve.ts', import.meta.url).pathname, [join(work, 'source.bin')], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const ready = await new Promise<{ url: string; commit: string }>((resolve, reject) => {
      server.once('message', (m: { type: string; url: string; commit: string }) => (m.type === 'ready' ? resolve(m) : reject(new Error('bad message'))));
      server.once('exit', (code) => reject(new Error(`hub-serve exited with ${code}`)));
    });
    const cfgFor = (cacheDir: string, retries = 5, connections?: number) =>
      hubConfigFromEnv({ HF_TOKEN_PATH: '/nonexistent/token' }, { endpoint: ready.url, cacheDir, retries, retryBaseMs: 50, ...(connections ? { connections } : {}) });
    const spec = { id: 'big', repo: 'bench/big', revision: 'main', files: ['*'], allow_pickle: [], quantize: { format: 'none' as const }, verify: {} };
    const entry: LockEntry = { ...(await resolveHubModel(spec, cfgFor(join(work, 'lock-cache')))), fragment: 'bench' };
    const url = resolveUrl(cfgFor(work), 'bench/big', ready.commit, 'big.safetensors');

    const [runner] = await compileBench('hub', ['bench/hub-download-run.ts']);
    const entryFile = join(work, 'entry.json');
    await writeFile(entryFile, JSON.stringify(entry));
    type Sample = { ms: number; cpuMs: number; rss: number };
    const samples: Record<'curl' | 'curlSynced' | 'bake1' | 'bakeN', Sample[]> = { curl: [], curlSynced: [], bake1: [], bakeN: [] };
    const defaultConnections = cfgFor(work).connections;
    for (let run = 0; run < runs; run++) {
      // Alternate the order so no one always runs on a warmer machine.
      const order = ['curl', 'bake1', 'bakeN'];
      for (let i = 0; i < run % order.length; i++) order.push(order.shift()!);
      for (const who of order) {
        if (who === 'curl') {
          const out = join(work, `curl-${run}.bin`);
          const r = await timedRun(CURL, ['-sS', '-f', '-L', '-o', out, url]);
          if ((await stat(out)).size !== SIZE) throw new Error('curl downloaded a wrong size');
          samples.curl.push({ ms: r.seconds * 1000, cpuMs: r.cpuSeconds * 1000, rss: r.rss });
          // curl, then an fsync of its file: the durable reference (bake syncs before its rename).
          const t0 = process.hrtime.bigint();
          await promisify(execFile)('/usr/bin/sync', [out]);
          samples.curlSynced.push({ ms: r.seconds * 1000 + Number(process.hrtime.bigint() - t0) / 1e6, cpuMs: r.cpuSeconds * 1000, rss: r.rss });
          await rm(out, { force: true });
        } else {
          const cache = join(work, `bake-${run}`);
          const connections = who === 'bake1' ? 1 : defaultConnections;
          const r = await timedRun(process.execPath, [runner!, entryFile, ready.url, cache, String(connections)]);
          const report = JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; cpuSeconds: number; downloadedBytes: number };
          if (report.downloadedBytes !== SIZE) throw new Error('bake downloaded a wrong size');
          samples[who as 'bake1' | 'bakeN'].push({ ms: report.seconds * 1000, cpuMs: report.cpuSeconds * 1000, rss: r.rss });
          await rm(cache, { recursive: true, force: true });
        }
      }
    }
    // One sha256 pass over the file, for the CPU budget.
    const sha = await timedRun('openssl', ['dgst', '-sha256', join(work, 'source.bin')]);
    const shaCpuMs = sha.cpuSeconds * 1000;

    // Cut at 50 % of one stream (one connection), resumed within the same pull (retries on).
    await ask(server, { type: 'faults', faults: [{ kind: 'cut', path: 'big.safetensors', cutAt: SIZE / 2, times: 1 }] }, 'faults-set');
    const inRun = await pullModel(entry, cfgFor(join(work, 'cut-a'), 5, 1));
    const inRunServed = (await ask<{ bytesFor: number }>(server, { type: 'stats' }, 'stats')).bytesFor;
    await rm(join(work, 'cut-a'), { recursive: true, force: true });

    // Cut at 50 % with no retries (the process gives up), then a second pull resumes from the partial file.
    await ask(server, { type: 'faults', faults: [{ kind: 'cut', path: 'big.safetensors', cutAt: SIZE / 2, times: 1 }] }, 'faults-set');
    const cutCache = join(work, 'cut-b');
    await pullModel(entry, cfgFor(cutCache, 0, 1)).then(
      () => {
        throw new Error('the cut did not happen');
      },
      () => undefined,
    );
    const firstServed = (await ask<{ bytesFor: number }>(server, { type: 'stats' }, 'stats')).bytesFor;
    await ask(server, { type: 'faults', faults: [] }, 'faults-set');
    const second = await pullModel(entry, cfgFor(cutCache, 5, 1));
    const secondServed = (await ask<{ bytesFor: number }>(server, { type: 'stats' }, 'stats')).bytesFor;

    const mbps = (ms: number) => (SIZE / (1024 * 1024)) / (ms / 1000);
    const med = (xs: Sample[], f: (x: Sample) => number) => median(xs.map(f));
    const row = (xs: Sample[]) => ({ ms: Math.round(med(xs, (x) => x.ms)), cpuMs: Math.round(med(xs, (x) => x.cpuMs)), rssMb: Math.round(med(xs, (x) => x.rss) / 1e6) });
    const curl = row(samples.curl);
    const curlSynced = row(samples.curlSynced);
    const bake1 = row(samples.bake1);
    const bakeN = row(samples.bakeN);
    const budgetMs = 2 * curl.cpuMs + shaCpuMs;
    const result = {
      bench: 'hub-download',
      sizeBytes: SIZE,
      runs,
      curl,
      curlSynced,
      bakeOneConnection: bake1,
      bakeDefault: { ...bakeN, connections: defaultConnections },
      // Speed relative to curl (>= 0.9 is the goal for one connection): curl's time / bake's time.
      speedOneConnectionVsCurl: Number((curl.ms / bake1.ms).toFixed(3)),
      speedOneConnectionVsCurlSynced: Number((curlSynced.ms / bake1.ms).toFixed(3)),
      speedDefaultVsCurl: Number((curl.ms / bakeN.ms).toFixed(3)),
      sha256CpuMs: Math.round(shaCpuMs),
      cpuBudgetMs: Math.round(budgetMs),
      cpuOneConnectionOverBudget: Number((bake1.cpuMs / budgetMs).toFixed(3)),
      loadAverage1m: Number(loadavg()[0]!.toFixed(2)),
      cutInRun: { servedBytes: inRunServed, extraBytes: inRunServed - SIZE, downloadedBytes: inRun.downloadedBytes },
      cutAcrossRuns: {
        firstRunServed: firstServed,
        secondRunServed: secondServed,
        secondRunDownloaded: second.downloadedBytes,
        refetchedBytes: firstServed + secondServed - SIZE,
      },
    };
    console.log(`${sizeMb} MiB over loopback, median of ${runs} alternating runs; load average ${result.loadAverage1m}`);
    console.log('| measure | wall ms | speed vs curl | MiB/s | CPU ms | peak RSS MB |');
    console.log('|---|---|---|---|---|---|');
    console.log(`| curl (one connection) | ${curl.ms} | 1 | ${mbps(curl.ms).toFixed(0)} | ${curl.cpuMs} | ${curl.rssMb} |`);
    console.log(`| curl + fsync of its file | ${curlSynced.ms} | ${(curl.ms / curlSynced.ms).toFixed(2)} | ${mbps(curlSynced.ms).toFixed(0)} | ${curl.cpuMs} | ${curl.rssMb} |`);
    console.log(`| bake, one connection | ${bake1.ms} | ${result.speedOneConnectionVsCurl} | ${mbps(bake1.ms).toFixed(0)} | ${bake1.cpuMs} | ${bake1.rssMb} |`);
    console.log(`| bake, ${defaultConnections} connections (default) | ${bakeN.ms} | ${result.speedDefaultVsCurl} | ${mbps(bakeN.ms).toFixed(0)} | ${bakeN.cpuMs} | ${bakeN.rssMb} |`);
    console.log(`CPU budget (2 x curl ${curl.cpuMs} + one sha256 pass ${Math.round(shaCpuMs)}) = ${Math.round(budgetMs)} ms; bake one connection uses ${result.cpuOneConnectionOverBudget} of it`);
    console.log(`cut at 50 %, resumed in the same pull: ${inRunServed} bytes served (${inRunServed - SIZE} over the file size)`);
    console.log(`cut at 50 %, resumed by a second pull: ${firstServed} + ${secondServed} bytes served (${firstServed + secondServed - SIZE} fetched twice)`);
    console.log(JSON.stringify(result));
  } finally {
    if (server.connected) server.send({ type: 'close' });
    await once(server, 'exit').catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

await main();
