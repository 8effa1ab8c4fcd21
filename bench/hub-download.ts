// Benchmark: bake's Hub download (stream to disk + sha256 + fsync + cache layout) against `curl -L`
// of the same URL in the same run (and against curl plus an fsync of its file, the same durability),
// over loopback from the test Hub (in its own process), and the bytes downloaded again after a cut at 50 %.
//   node --import tsx bench/hub-download.ts [--size-mb 1024] [--runs 3]
// Prints a table and, last, one JSON line.
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { hubConfigFromEnv } from '../src/hub/config.js';
import { pullModel } from '../src/hub/pull.js';
import { resolveHubModel } from '../src/lock/resolve.js';
import { resolveUrl } from '../src/hub/files.js';
import type { LockEntry } from '../src/lock/types.js';
import { median, numberOption } from './args.js';

const sizeMb = numberOption('size-mb', 1024);
const runs = numberOption('runs', 3);
const SIZE = sizeMb * 1024 * 1024;
const CURL = '/usr/bin/curl';

/** Incompressible, reproducible content: AES-CTR keystream. */
async function generate(path: string, size: number): Promise<void> {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  const out = createWriteStream(path);
  const zeros = Buffer.alloc(8 << 20);
  for (let left = size; left > 0; left -= zeros.length) {
    if (!out.write(cipher.update(zeros.subarray(0, Math.min(zeros.length, left))))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

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

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}


async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'bake-bench-hub-'));
  await generate(join(work, 'source.bin'), SIZE);
  const server = fork(new URL('./hub-serve.ts', import.meta.url).pathname, [join(work, 'source.bin')], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const ready = await new Promise<{ url: string; commit: string }>((resolve, reject) => {
      server.once('message', (m: { type: string; url: string; commit: string }) => (m.type === 'ready' ? resolve(m) : reject(new Error('bad message'))));
      server.once('exit', (code) => reject(new Error(`hub-serve exited with ${code}`)));
    });
    const cfgFor = (cacheDir: string, retries = 5) => hubConfigFromEnv({ HF_TOKEN_PATH: '/nonexistent/token' }, { endpoint: ready.url, cacheDir, retries, retryBaseMs: 50 });
    const spec = { id: 'big', repo: 'bench/big', revision: 'main', files: ['*'], allow_pickle: [], quantize: { format: 'none' as const }, verify: {} };
    const entry: LockEntry = { ...(await resolveHubModel(spec, cfgFor(join(work, 'lock-cache')))), fragment: 'bench' };
    const url = resolveUrl(cfgFor(work), 'bench/big', ready.commit, 'big.safetensors');

    const curlMs: number[] = [];
    // curl, then an fsync of its file: the durable reference (bake syncs before its rename).
    const curlSyncedMs: number[] = [];
    const bakeMs: number[] = [];
    // CPU time is steadier than wall time on a shared machine; both are reported.
    const curlCpuMs: number[] = [];
    const bakeCpuMs: number[] = [];
    for (let run = 0; run < runs; run++) {
      // Alternate the order so neither always runs on a warmer machine.
      const order = run % 2 === 0 ? ['curl', 'bake'] : ['bake', 'curl'];
      for (const who of order) {
        if (who === 'curl') {
          const out = join(work, `curl-${run}.bin`);
          // /usr/bin/time reports curl's own CPU seconds (user + system) on stderr.
          const { ms, value } = await timed(() => promisify(execFile)('/usr/bin/time', ['-f', '%U %S', CURL, '-sS', '-f', '-L', '-o', out, url]));
          if ((await stat(out)).size !== SIZE) throw new Error('curl downloaded a wrong size');
          curlMs.push(ms);
          const [u, sys] = value.stderr.trim().split(/\s+/).slice(-2).map(Number);
          curlCpuMs.push((u! + sys!) * 1000);
          const synced = await timed(() => promisify(execFile)('/usr/bin/sync', [out]));
          curlSyncedMs.push(ms + synced.ms);
          await rm(out, { force: true });
        } else {
          const cache = join(work, `bake-${run}`);
          const cpu0 = process.cpuUsage();
          const { ms, value } = await timed(() => pullModel(entry, cfgFor(cache)));
          const cpu = process.cpuUsage(cpu0);
          if (value.downloadedBytes !== SIZE) throw new Error('bake downloaded a wrong size');
          bakeMs.push(ms);
          bakeCpuMs.push((cpu.user + cpu.system) / 1000);
          await rm(cache, { recursive: true, force: true });
        }
      }
    }

    // Cut at 50 %, resumed within the same pull (retries on).
    await ask(server, { type: 'faults', faults: [{ kind: 'cut', path: 'big.safetensors', cutAt: SIZE / 2, times: 1 }] }, 'faults-set');
    const inRun = await pullModel(entry, cfgFor(join(work, 'cut-a')));
    const inRunServed = (await ask<{ bytesFor: number }>(server, { type: 'stats' }, 'stats')).bytesFor;
    await rm(join(work, 'cut-a'), { recursive: true, force: true });

    // Cut at 50 % with no retries (the process gives up), then a second pull resumes from the partial file.
    await ask(server, { type: 'faults', faults: [{ kind: 'cut', path: 'big.safetensors', cutAt: SIZE / 2, times: 1 }] }, 'faults-set');
    const cutCache = join(work, 'cut-b');
    await pullModel(entry, cfgFor(cutCache, 0)).then(
      () => {
        throw new Error('the cut did not happen');
      },
      () => undefined,
    );
    const firstServed = (await ask<{ bytesFor: number }>(server, { type: 'stats' }, 'stats')).bytesFor;
    await ask(server, { type: 'faults', faults: [] }, 'faults-set');
    const second = await pullModel(entry, cfgFor(cutCache));
    const secondServed = (await ask<{ bytesFor: number }>(server, { type: 'stats' }, 'stats')).bytesFor;

    const mbps = (ms: number) => (SIZE / (1024 * 1024)) / (ms / 1000);
    const result = {
      bench: 'hub-download',
      sizeBytes: SIZE,
      runs,
      curlMsMedian: Math.round(median(curlMs)),
      bakeMsMedian: Math.round(median(bakeMs)),
      curlMs: curlMs.map(Math.round),
      bakeMs: bakeMs.map(Math.round),
      ratioBakeOverCurl: Number((median(bakeMs) / median(curlMs)).toFixed(3)),
      curlSyncedMsMedian: Math.round(median(curlSyncedMs)),
      ratioBakeOverCurlSynced: Number((median(bakeMs) / median(curlSyncedMs)).toFixed(3)),
      curlCpuMsMedian: Math.round(median(curlCpuMs)),
      bakeCpuMsMedian: Math.round(median(bakeCpuMs)),
      cpuRatioBakeOverCurl: Number((median(bakeCpuMs) / median(curlCpuMs)).toFixed(3)),
      loadAverage1m: Number(loadavg()[0]!.toFixed(2)),
      cutInRun: { servedBytes: inRunServed, extraBytes: inRunServed - SIZE, downloadedBytes: inRun.downloadedBytes },
      cutAcrossRuns: {
        firstRunServed: firstServed,
        secondRunServed: secondServed,
        secondRunDownloaded: second.downloadedBytes,
        refetchedBytes: firstServed + secondServed - SIZE,
      },
    };
    console.log('| measure | curl | bake | ratio |');
    console.log('|---|---|---|---|');
    console.log(`| ${sizeMb} MiB over loopback, median of ${runs} (ms) | ${result.curlMsMedian} | ${result.bakeMsMedian} | ${result.ratioBakeOverCurl} |`);
    console.log(`| same, curl followed by an fsync of its file (ms) | ${result.curlSyncedMsMedian} | ${result.bakeMsMedian} | ${result.ratioBakeOverCurlSynced} |`);
    console.log(`| CPU time, median (ms) | ${result.curlCpuMsMedian} | ${result.bakeCpuMsMedian} | ${result.cpuRatioBakeOverCurl} |`);
    console.log(`| throughput (MiB/s) | ${mbps(median(curlMs)).toFixed(0)} | ${mbps(median(bakeMs)).toFixed(0)} | |`);
    console.log(`| cut at 50 %, resumed in the same pull: bytes served | | ${inRunServed} (${inRunServed - SIZE} over the file size) | |`);
    console.log(`| cut at 50 %, resumed by a second pull: bytes served first + second | | ${firstServed} + ${secondServed} (${firstServed + secondServed - SIZE} fetched twice) | |`);
    console.log(JSON.stringify(result));
  } finally {
    if (server.connected) server.send({ type: 'close' });
    await once(server, 'exit').catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

await main();
