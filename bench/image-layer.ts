// Bench: baking a 1 GB model folder into an OCI layout (deterministic tar, sha256, blob write)
// against the floor any tool pays for the same bytes: `sha256sum` + `cp` of the file.
//
//   node --import tsx bench/image-layer.ts [--size-mb 1024] [--reps 3] [--gzip]
//
// Both sides run in the same invocation on the same (page-cached) file, alternating, median of reps.
//
// Prints one JSON line per measurement and a summary with ratios (bake time / reference time).
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { appendLayers, dirLayer, scratchImage, writeOciLayout } from '../src/image/oci/index.js';
import { flagOption, median, numberOption } from './args.js';

const sizeMb = numberOption('size-mb', 1024);
const reps = numberOption('reps', 3);
const withGzip = flagOption('gzip');

async function makeWeights(file: string, mb: number): Promise<void> {
  // Random bytes: like quantized weights, they do not compress.
  const out = createWriteStream(file);
  const chunk = randomBytes(1 << 20);
  for (let i = 0; i < mb; i++) {
    chunk[0] = i & 0xff;
    if (!out.write(Buffer.from(chunk))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r, j) => out.end((e?: Error | null) => (e ? j(e) : r())));
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}


const root = await mkdtemp(join(tmpdir(), 'bake-bench-'));
try {
  const model = join(root, 'model');
  await mkdir(model);
  const weights = join(model, 'model.gguf');
  await makeWeights(weights, sizeMb);
  execFileSync('sync');

  const reference = async (i: number) => {
    const t = process.hrtime.bigint();
    execFileSync('sha256sum', [weights]);
    execFileSync('cp', [weights, join(root, `ref-${i}`)]);
    const s = seconds(t);
    await rm(join(root, `ref-${i}`));
    return s;
  };
  // coreutils sha256sum here has no SHA-NI path; OpenSSL (what Node uses) does: report both floors.
  const referenceOpenssl = async (i: number) => {
    const t = process.hrtime.bigint();
    execFileSync('openssl', ['dgst', '-sha256', weights]);
    execFileSync('cp', [weights, join(root, `ref-${i}`)]);
    const s = seconds(t);
    await rm(join(root, `ref-${i}`));
    return s;
  };
  const bake = async (i: number, compression: 'none' | 'gzip', cache: boolean) => {
    const out = join(root, `oci-${i}`);
    const cacheDir = join(root, `cache-${i}`);
    const t = process.hrtime.bigint();
    const layer = await dirLayer(model, 'app/models/m', { compression, epoch: 0, ...(cache ? { cacheDir } : {}) });
    await writeOciLayout(appendLayers(scratchImage(), [layer]), out, { tags: ['b'] });
    const s = seconds(t);
    await rm(out, { recursive: true });
    await rm(cacheDir, { recursive: true, force: true });
    return s;
  };

  await reference(-1); // warm the page cache for everyone alike
  const variants: [string, (i: number) => Promise<number>][] = [
    ['reference sha256sum+cp', reference],
    ['reference openssl dgst+cp', referenceOpenssl],
    ['bake none (re-pack on write)', (i) => bake(i, 'none', false)],
    ['bake none (cacheDir, linked blob)', (i) => bake(i, 'none', true)],
    ...(withGzip ? ([['bake gzip (cacheDir)', (i: number) => bake(i, 'gzip', true)]] as [string, (i: number) => Promise<number>][]) : []),
  ];
  const times = new Map<string, number[]>(variants.map(([n]) => [n, []]));
  for (let i = 0; i < reps; i++) {
    for (const [name, fn] of variants) {
      const s = await fn(i);
      times.get(name)!.push(s);
      console.log(JSON.stringify({ rep: i, variant: name, seconds: +s.toFixed(3), mbPerS: +(sizeMb / s).toFixed(1) }));
    }
  }
  const ref = median(times.get('reference sha256sum+cp')!);
  console.log(`\n${sizeMb} MB, median of ${reps}:`);
  for (const [name] of variants) {
    const m = median(times.get(name)!);
    const refSsl = median(times.get('reference openssl dgst+cp')!);
    console.log(`  ${name.padEnd(36)} ${m.toFixed(2)} s  ${(sizeMb / m).toFixed(0)} MB/s  ratio vs sha256sum+cp ${(m / ref).toFixed(2)}  vs openssl+cp ${(m / refSsl).toFixed(2)}`);
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
