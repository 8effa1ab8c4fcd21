// Bench: baking a 1 GiB model folder into an OCI layout (deterministic tar, sha256, blob write) against
// the floor any tool pays for the same bytes: a sha256 of the file plus `cp` of it (`openssl dgst
// -sha256`, which uses the same SHA extensions as Node, and coreutils `sha256sum`, which here does not).
//
//   node --import tsx bench/image-layer.ts [--size-mb 1024] [--reps 3] [--gzip]
//
// All run in the same invocation on the same (page-cached) file, alternating, median of reps; bake runs
// compiled in a child process. Wall time, CPU time and peak RSS; speed = reference time / bake time
// (>= 0.8 is the goal against openssl + cp). The layers' digests are checked against a sha256 of the tar.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { flagOption, incompressibleFile, median, numberOption } from './args.js';
import { compileBench, timedRun } from './compile.js';

const sizeMb = numberOption('size-mb', 1024);
const reps = numberOption('reps', 3);
const withGzip = flagOption('gzip');

type Sample = { seconds: number; cpuSeconds: number; rss: number };

const root = await mkdtemp(join(tmpdir(), 'bake-bench-layer-'));
try {
  const model = join(root, 'model');
  await mkdir(model);
  const weights = join(model, 'model.gguf');
  // Like quantized weights, it does not compress.
  await incompressibleFile(weights, sizeMb * 1024 * 1024);
  await timedRun('sync', []);
  const [runner] = await compileBench('layer', ['bench/image-layer-run.ts']);

  /** Two tools one after the other: wall and CPU add up, peak RSS is the larger. */
  const pair = async (first: [string, string[]], second: [string, string[]]): Promise<Sample> => {
    const a = await timedRun(...first);
    const b = await timedRun(...second);
    return { seconds: a.seconds + b.seconds, cpuSeconds: a.cpuSeconds + b.cpuSeconds, rss: Math.max(a.rss, b.rss) };
  };
  const reference = (hash: string) => async (i: number): Promise<Sample> => {
    const copy = join(root, `ref-${i}`);
    const s = await pair(hash === 'openssl' ? ['openssl', ['dgst', '-sha256', weights]] : ['sha256sum', [weights]], ['cp', [weights, copy]]);
    await rm(copy);
    return s;
  };
  const digests = new Set<string>();
  const bake = (compression: 'none' | 'gzip', cache: boolean) => async (i: number): Promise<Sample> => {
    const out = join(root, `oci-${i}`);
    const cacheDir = join(root, `cache-${i}`);
    const r = await timedRun(process.execPath, [runner!, model, out, compression, ...(cache ? [cacheDir] : [])]);
    const report = JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; cpuSeconds: number; digest: string };
    if (compression === 'none') digests.add(report.digest);
    await rm(out, { recursive: true });
    await rm(cacheDir, { recursive: true, force: true });
    return { seconds: report.seconds, cpuSeconds: report.cpuSeconds, rss: r.rss };
  };

  await reference('openssl')(-1); // warm the page cache for everyone alike
  const variants: [string, (i: number) => Promise<Sample>][] = [
    ['reference sha256sum + cp', reference('sha256sum')],
    ['reference openssl dgst + cp', reference('openssl')],
    ['bake, layer cached in the store (pipeline)', bake('none', true)],
    ['bake, no cache (hash, then pack into the layout)', bake('none', false)],
    ...(withGzip ? ([['bake gzip (cached)', bake('gzip', true)]] as [string, (i: number) => Promise<Sample>][]) : []),
  ];
  const samples = new Map<string, Sample[]>(variants.map(([n]) => [n, []]));
  for (let i = 0; i < reps; i++) {
    // Alternate: odd reps run the variants the other way round.
    for (const [name, fn] of i % 2 ? [...variants].reverse() : variants) samples.get(name)!.push(await fn(i));
  }

  // Every uncompressed layer had one digest: a tar of the folder whose sha256 bake computed while packing.
  if (digests.size !== 1) throw new Error(`bake's layers had ${digests.size} digests`);

  const med = (name: string, f: (s: Sample) => number) => median(samples.get(name)!.map(f));
  const ref = med('reference openssl dgst + cp', (s) => s.seconds);
  console.log(`${sizeMb} MiB incompressible file, median of ${reps} alternating reps; load average ${loadavg()[0]!.toFixed(2)}`);
  console.log('| variant | wall s | MB/s | speed vs openssl + cp | CPU s | peak RSS MB |');
  console.log('|---|---|---|---|---|---|');
  const rows = [];
  for (const [name] of variants) {
    const s = med(name, (x) => x.seconds);
    const row = { variant: name, seconds: Number(s.toFixed(3)), speedVsOpensslCp: Number((ref / s).toFixed(3)), cpuSeconds: Number(med(name, (x) => x.cpuSeconds).toFixed(3)), rssMb: Math.round(med(name, (x) => x.rss) / 1e6) };
    rows.push(row);
    console.log(`| ${name} | ${s.toFixed(2)} | ${((sizeMb * 1.048576) / s).toFixed(0)} | ${row.speedVsOpensslCp} | ${row.cpuSeconds} | ${row.rssMb} |`);
  }
  console.log(JSON.stringify({ bench: 'image-layer', sizeMb, reps, loadAverage1m: Number(loadavg()[0]!.toFixed(2)), rows }));
} finally {
  await rm(root, { recursive: true, force: true });
}
