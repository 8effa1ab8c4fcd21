// worker_threads entry: quantizes batches of whole rows with the type table's kernels.
import { parentPort } from 'node:worker_threads';
import { ggmlTypeByName } from './types.js';

export interface QuantizeJob {
  id: number;
  typeName: string;
  src: Float32Array;
  outBytes: number;
}

parentPort!.on('message', (job: QuantizeJob) => {
  try {
    const type = ggmlTypeByName(job.typeName)!;
    const out = new Uint8Array(job.outBytes);
    type.quantize(job.src, out);
    parentPort!.postMessage({ id: job.id, out }, [out.buffer]);
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: (err as Error).message });
  }
});
