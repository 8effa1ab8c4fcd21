// Container start to "pre-quantized <id> loaded": a baked image (files checked against the manifest)
// against BUNDLE_MODELS=false (files fetched from a loopback Hub at start, then checked). Reference in
// the same run: a bare container start of the same base (node prints one line), the floor for both.
//   node --import tsx bench/docker-start.ts            (BENCH_SIZES_MB=100 BENCH_RUNS=5)
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { loadRecipe } from '../src/recipe/load.js';
import { writeBuildFiles } from '../src/image/dockerfile/index.js';
import { buildTarget, connectEngine, ensureBakeImage } from '../src/image/docker/index.js';
import { docker, DOCKER_CLI } from '../test/support/docker-env.js';
import { BASES, benchProject, median, NODE_IMAGE } from './docker-common.js';

const sizes = (process.env.BENCH_SIZES_MB ?? '100').split(',').map(Number);
const runs = Number(process.env.BENCH_RUNS ?? 5);

/** ms from `docker run` to the first output line matching `until`; the container is removed after. */
function timeToLine(args: string[], until: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    const name = `bake-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const t0 = performance.now();
    const child = spawn(DOCKER_CLI, ['run', '--rm', '--name', name, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let done = false;
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (!done && until.test(out)) {
        done = true;
        const ms = performance.now() - t0;
        void docker(['rm', '-f', name]).then(() => resolve(ms));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', () => {
      if (!done) reject(new Error(`container ended before ${until}: ${out}`));
    });
  });
}

const p = await benchProject(sizes);
try {
  await ensureBakeImage({ docker: connectEngine(), nodeImage: NODE_IMAGE });
  const rows: string[][] = [['model', 'bare start ms', 'baked: start to loaded ms', 'BUNDLE_MODELS=false ms', 'baked/bare', 'unbundled/baked']];
  for (const mb of sizes) {
    const recipe = await loadRecipe(p.recipes[mb]!, p.dir);
    const files = await writeBuildFiles({ root: p.dir, recipe });
    const common = { recipe, target: 'cpu' as const, contextDir: p.dir, dockerfile: files.dockerfile, network: 'host' as const, nodeImage: NODE_IMAGE, ensureBuilder: false };
    const baked = (await buildTarget({ ...common, tag: `bake.bench/m${mb}:baked`, buildArgs: { ...BASES, HF_ENDPOINT: p.hub.url } })).imageId;
    const unbundled = (await buildTarget({ ...common, tag: `bake.bench/m${mb}:unbundled`, buildArgs: { ...BASES, HF_ENDPOINT: p.hub.url, BUNDLE_MODELS: 'false' } })).imageId;
    const loaded = new RegExp(`pre-quantized m${mb} loaded in`);
    const bare: number[] = [];
    const bakedMs: number[] = [];
    const unbundledMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      bare.push(await timeToLine(['--network', 'none', '--entrypoint', 'node', baked, '-e', 'console.log("up")'], /up/));
      bakedMs.push(await timeToLine(['--network', 'none', baked], loaded));
      // A fresh container each time: an empty Hub cache, so every start downloads the model.
      unbundledMs.push(await timeToLine(['--network', 'host', '-e', `HF_ENDPOINT=${p.hub.url}`, unbundled], loaded));
    }
    const [b, k, u] = [median(bare), median(bakedMs), median(unbundledMs)];
    rows.push([`${mb} MB`, b.toFixed(0), k.toFixed(0), u.toFixed(0), (k / b).toFixed(2), (u / k).toFixed(2)]);
  }
  for (const r of rows) console.log(r.join(' | '));
} finally {
  await p.close();
}
