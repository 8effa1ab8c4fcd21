// onnxruntime-node sessions with bake's errors: a model onnxruntime cannot load is bad input, named.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { BakeError, InputError } from '../../util/errors.js';
import type { Feeds } from './inputs.js';

export async function openSession(file: string): Promise<ort.InferenceSession> {
  try {
    // One intra-op thread: measurements compare models, not thread scheduling on a shared 2-core machine.
    return await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 });
  } catch (err) {
    throw new InputError(`onnxruntime cannot load ${file}: ${(err as Error).message}`, {
      file, expected: 'a model onnxruntime-node can load', hint: 'check the opset and operators are supported by onnxruntime, or exclude the nodes that break (quantize.nodes_exclude)', cause: err,
    });
  }
}

export async function runSession(session: ort.InferenceSession, feeds: Feeds, file: string): Promise<ort.InferenceSession.OnnxValueMapType> {
  try {
    return await session.run(feeds);
  } catch (err) {
    const shapes = Object.entries(feeds).map(([k, t]) => `${k}[${t.dims.join(',')}]`).join(' ');
    throw new InputError(`onnxruntime failed running ${file} on inputs ${shapes}: ${(err as Error).message}`, {
      file, expected: 'inputs the model accepts', hint: 'give the input shapes the model needs (verify input dims) or verify with text inputs', cause: err,
    });
  }
}

// Runs in a fresh node process so its peak RSS is the model's alone (maxRSS is per process).
const PROBE = `
const ort = require(process.argv[1]);
const fs = require('fs');
(async () => {
  const spec = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
  const feeds = {};
  for (const [k, v] of Object.entries(spec)) {
    const data = v.type === 'float32' ? Float32Array.from(v.data) : v.type === 'int64' ? BigInt64Array.from(v.data.map(BigInt)) : v.type === 'int32' ? Int32Array.from(v.data) : Uint8Array.from(v.data);
    feeds[k] = new ort.Tensor(v.type, data, v.dims);
  }
  // Resident size sampled after loading and after running: the kernel's high-water marks (getrusage
  // maxrss, VmHWM) were seen to carry the spawning parent's size into the child, so they are not used.
  let peak = process.memoryUsage.rss();
  const s = await ort.InferenceSession.create(process.argv[2], { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 });
  peak = Math.max(peak, process.memoryUsage.rss());
  await s.run(feeds);
  peak = Math.max(peak, process.memoryUsage.rss());
  process.stdout.write(JSON.stringify({ maxRSS: peak }));
})().catch((e) => { process.stderr.write(String(e && e.message || e)); process.exit(1); });
`;

/** Peak resident memory (bytes) of a process that loads `file` and runs it once on `feeds`. */
export async function peakRss(file: string, feeds: Feeds): Promise<number> {
  const ortPath = createRequire(import.meta.url).resolve('onnxruntime-node');
  const dir = await mkdtemp(join(tmpdir(), 'bake-rss-'));
  try {
    const spec: Record<string, unknown> = {};
    for (const [k, t] of Object.entries(feeds)) spec[k] = { type: t.type, dims: t.dims, data: Array.from(t.data as ArrayLike<number | bigint>, (x) => (typeof x === 'bigint' ? x.toString() : x)) };
    const feedFile = join(dir, 'feeds.json');
    await writeFile(feedFile, JSON.stringify(spec));
    return await new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', PROBE, ortPath, file, feedFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', errText = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (errText += d));
      child.on('error', reject);
      child.on('close', (code) => {
        if (code === 0) resolve((JSON.parse(out) as { maxRSS: number }).maxRSS);
        else reject(new BakeError(`peak memory probe for ${file} failed: ${errText.trim()}`));
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
