// worker_threads entry: quantizes a range of whole rows from a shared input buffer into a shared output
// buffer with the type table's kernels (no copies, no transfers).
import { parentPort } from 'node:worker_threads';
import { ggmlTypeByName } from './types.js';

export interface QuantizeJob {
  id: number;
  typeName: string;
  input: SharedArrayBuffer;
  /** First value and number of values (whole rows) to read. */
  inStart: number;
  inCount: number;
  output: SharedArrayBuffer;
  outStart: number;
  outBytes: number;
}

parentPort!.on('message', (job: QuantizeJob) => {
  try {
    const type = ggmlTypeByName(job.typeName)!;
    type.quantize(new Float32Array(job.input, job.inStart * 4, job.inCount), new Uint8Array(job.output, job.outStart, job.outBytes));
    parentPort!.postMessage({ id: job.id });
  } catch (err) {
    parentPort!.postMessage({ id: job.id, error: (err as Error).message });
  }
});
