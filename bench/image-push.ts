// Bench: pushing a 1 GB model image to a loopback registry (Debian's docker-registry) with
// pushImage against `skopeo copy` of the same OCI layout, each into a fresh registry.
//
//   node --import tsx bench/image-push.ts [--size-mb 1024] [--reps 3] [--chunk-mb 512]
//
// Both sides run in the same invocation, alternating; median of reps; ratio = bake / skopeo.
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { appendLayers, dirLayer, pushImage, scratchImage, writeOciLayout } from '../src/image/oci/index.js';
import { startRegistry } from '../test/support/registry.js';
import { numberOption } from './args.js';

const sizeMb = numberOption('size-mb', 1024);
const reps = numberOption('reps', 3);
const chunkMb = numberOption('chunk-mb', 512);

const root = await mkdtemp(join(tmpdir(), 'bake-bench-push-'));
try {
  const model = join(root, 'model');
  await mkdir(model);
  const out = createWriteStream(join(model, 'model.gguf'));
  const chunk = randomBytes(1 << 20);
  for (let i = 0; i < sizeMb; i++) {
    chunk[0] = i & 0xff;
    if (!out.write(Buffer.from(chunk))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
  const layer = await dirLayer(model, 'app/models/m', { compression: 'none', epoch: 0, cacheDir: join(root, 'cache') });
  const img = appendLayers(scratchImage(), [layer]);
  const layout = join(root, 'oci');
  await writeOciLayout(img, layout, { tags: ['b'] });

  const measure = async (name: string, fn: (host: string) => Promise<void>) => {
    const registry = await startRegistry();
    try {
      const t = process.hrtime.bigint();
      await fn(registry.host);
      return Number(process.hrtime.bigint() - t) / 1e9;
    } finally {
      await registry.close();
    }
  };
  const variants: [string, (host: string) => Promise<void>][] = [
    ['skopeo copy oci: -> docker://', async (host) => {
      execFileSync('skopeo', ['copy', '-q', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:b`, `docker://${host}/bench/m:b`]);
    }],
    [`bake pushImage (${chunkMb} MiB chunks)`, async (host) => {
      await pushImage(img, `${host}/bench/m`, { tags: ['b'], chunkSize: chunkMb << 20 });
    }],
  ];
  const times = new Map<string, number[]>(variants.map(([n]) => [n, []]));
  for (let i = 0; i < reps; i++) {
    for (const [name, fn] of variants) {
      const s = await measure(name, fn);
      times.get(name)!.push(s);
      console.log(JSON.stringify({ rep: i, variant: name, seconds: +s.toFixed(3), mbPerS: +(sizeMb / s).toFixed(1) }));
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const ref = med(times.get(variants[0]![0])!);
  console.log(`\n${sizeMb} MB, median of ${reps}:`);
  for (const [name] of variants) {
    const m = med(times.get(name)!);
    console.log(`  ${name.padEnd(34)} ${m.toFixed(2)} s  ${(sizeMb / m).toFixed(0)} MB/s  ratio ${(m / ref).toFixed(2)}`);
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
