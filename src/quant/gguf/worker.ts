// worker_threads entry: quantizes rows in shared memory (QuantizeJob), or rows of a file straight to
// their place in the output file through this thread's kernel memory (FileJob).
import { parentPort } from 'node:worker_threads';
import { FileJobRunner, type FileJob } from './file-job.js';
import type { QuantizeJob } from './pool.js';
import { ggmlTypeByName } from './types.js';

const files = new FileJobRunner();

type Message = ({ kind: 'rows' } & QuantizeJob) | { kind: 'file'; id: number; job: FileJob } | { kind: 'close'; id: number };

parentPort!.on('message', (msg: Message) => {
  try {
    if (msg.kind === 'close') {
      files.close();
      parentPort!.postMessage({ id: msg.id });
    } else if (msg.kind === 'file') {
      parentPort!.postMessage({ id: msg.id, bytes: files.run(msg.job) });
    } else {
      const type = ggmlTypeByName(msg.typeName)!;
      type.quantize(new Float32Array(msg.src, msg.srcOffset, msg.values), new Uint8Array(msg.dst, msg.dstOffset, msg.bytes));
      parentPort!.postMessage({ id: msg.id });
    }
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, error: (err as Error).message });
  }
});
