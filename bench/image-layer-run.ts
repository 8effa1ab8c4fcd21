// Child process of bench/image-layer.ts: packs a folder into a layer and writes an OCI layout, timed from
// inside (node's start-up is not billed to the packing).
//   node image-layer-run.js <modelDir> <outDir> <none|gzip> [cacheDir]
// Prints { seconds, cpuSeconds, digest } as one JSON line.
import { appendLayers, dirLayer, scratchImage, writeOciLayout } from '../src/image/oci/index.js';

const [model, out, compression, cacheDir] = process.argv.slice(2);
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
const layer = await dirLayer(model!, 'app/models/m', { compression: compression as 'none' | 'gzip', epoch: 0, ...(cacheDir ? { cacheDir } : {}) });
await writeOciLayout(appendLayers(scratchImage(), [layer]), out!, { tags: ['b'] });
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(c0);
process.stdout.write(JSON.stringify({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, digest: layer.digest }) + '\n');
