// Child process of bench/gguf-quantize.ts: requantizes one file and prints the seconds the call took,
// and CPU seconds, so node's start-up is not billed to the quantizer (llama-quantize's own start-up is tiny).
import { requantizeGguf } from '../src/quant/gguf/index.js';

const [inFile, outFile, type, threads] = process.argv.slice(2);
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage(); // process-wide: includes the worker threads
await requantizeGguf(inFile!, outFile!, { type: type!, threads: Number(threads) });
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(c0);
process.stdout.write(JSON.stringify({ seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 }) + '\n');
