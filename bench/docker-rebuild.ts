// Rebuild time of an image whose models did not change, for a 100 MB and a 1 GB model: it should be
// flat (BuildKit reuses every models stage and layer; no model byte is read or sent again). Reference
// in the same run: the engine's own CLI (`docker build`, BuildKit) rebuilding the same Dockerfile.
//   node --import tsx bench/docker-rebuild.ts          (BENCH_SIZES_MB=100,1000 BENCH_RUNS=3)
import { performance } from 'node:perf_hooks';
import { loadRecipe } from '../src/recipe/load.js';
import { writeBuildFiles } from '../src/image/dockerfile/index.js';
import { buildTarget, connectEngine, ensureBakeImage } from '../src/image/docker/index.js';
import { docker, dockerOk } from '../test/support/docker-env.js';
import { BASES, benchProject, median, NODE_IMAGE } from './docker-common.js';

const sizes = (process.env.BENCH_SIZES_MB ?? '100,1000').split(',').map(Number);
const runs = Number(process.env.BENCH_RUNS ?? 3);
const p = await benchProject(sizes);
try {
  // Cold means cold: no BuildKit cache, no cache mounts (Hub cache, artifact store) from earlier runs.
  if (!process.env.BENCH_KEEP_CACHE) await dockerOk(['builder', 'prune', '-af']);
  // The builder image (node + bake) is made once, outside the timings: it is not per-model work.
  await ensureBakeImage({ docker: connectEngine(), nodeImage: NODE_IMAGE });
  const rows: string[][] = [['model', 'cold build s', 'bake rebuild s (median)', 'docker CLI rebuild s (median)', 'bake/CLI']];
  const rebuild: Record<number, number> = {};
  for (const mb of sizes) {
    const recipe = await loadRecipe(p.recipes[mb]!, p.dir);
    const files = await writeBuildFiles({ root: p.dir, recipe });
    const buildArgs = { ...BASES, HF_ENDPOINT: p.hub.url };
    const build = async (): Promise<number> => {
      const t0 = performance.now();
      await buildTarget({ recipe, target: 'cpu', contextDir: p.dir, dockerfile: files.dockerfile, tag: `bake.bench/m${mb}:cpu`, buildArgs, network: 'host', nodeImage: NODE_IMAGE, ensureBuilder: false });
      return (performance.now() - t0) / 1000;
    };
    const cold = await build();
    const bakeTimes: number[] = [];
    const cliTimes: number[] = [];
    for (let i = 0; i < runs; i++) {
      bakeTimes.push(await build());
      const args = ['build', '-q', '-f', files.dockerfileRel, '--target', 'cpu', '--network', 'host', '-t', `bake.bench/m${mb}:cli`];
      for (const [k, v] of Object.entries(buildArgs)) args.push('--build-arg', `${k}=${v}`);
      const t0 = performance.now();
      const r = await docker([...args, '.'], { cwd: p.dir });
      if (r.code !== 0) throw new Error(r.stderr);
      cliTimes.push((performance.now() - t0) / 1000);
    }
    rebuild[mb] = median(bakeTimes);
    console.error(`${mb} MB: cold ${cold.toFixed(2)} s, bake rebuilds ${bakeTimes.map((t) => t.toFixed(2)).join(' ')} s, CLI rebuilds ${cliTimes.map((t) => t.toFixed(2)).join(' ')} s`);
    rows.push([`${mb} MB`, cold.toFixed(2), `${rebuild[mb]!.toFixed(2)} (${bakeTimes.map((t) => t.toFixed(2)).join(' ')})`, `${median(cliTimes).toFixed(2)} (${cliTimes.map((t) => t.toFixed(2)).join(' ')})`, (rebuild[mb]! / median(cliTimes)).toFixed(2)]);
  }
  for (const r of rows) console.log(r.join(' | '));
  if (sizes.length > 1) {
    const [a, b] = [sizes[0]!, sizes[sizes.length - 1]!];
    console.log(`flatness: rebuild(${b} MB) / rebuild(${a} MB) = ${(rebuild[b]! / rebuild[a]!).toFixed(2)} for ${b / a}x the bytes`);
  }
} finally {
  await p.close();
}
