// worker_threads entry: quantizes chunks of whole rows in shared memory with the type table's kernels.
import { parentPort } from 'node:worker_threads';
import type { QuantizeJob } from './pool.js';
import { ggmlTypeByName } from './types.js';

parentPort!.on('message', (job: QuantizeJob) => {
  try {
    const type = ggmlTypeByName(job.typeName)!;
    type.quantize(new Float32Array(job.src, job.srcOffset, job.values), new Uint8Array(job.dst, job.dstOffset, job.bytes));
    parentPort!.postMessage({ id: job.id });
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: (err as Error).message });
  }
});
