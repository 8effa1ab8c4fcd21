// Child process of bench/hub-download.ts and bench/hub-parallel.ts: one pullModel of a lock entry, timed
// from inside (node's start-up is not billed to the download; curl's own start-up is tiny).
//   node hub-download-run.js <entry.json> <endpoint> <cacheDir> <connections>
// Prints { seconds, cpuSeconds, downloadedBytes, connections } as one JSON line.
import { readFile } from 'node:fs/promises';
import { hubConfigFromEnv } from '../src/hub/config.js';
import { pullModel } from '../src/hub/pull.js';
import type { LockEntry } from '../src/lock/types.js';

const [entryFile, endpoint, cacheDir, connections] = process.argv.slice(2);
const entry = JSON.parse(await readFile(entryFile!, 'utf8')) as LockEntry;
const cfg = hubConfigFromEnv({ HF_TOKEN_PATH: '/nonexistent/token' }, { endpoint: endpoint!, cacheDir: cacheDir!, connections: Number(connections) });
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
const { downloadedBytes } = await pullModel(entry, cfg);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(c0);
process.stdout.write(JSON.stringify({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, downloadedBytes }) + '\n');
