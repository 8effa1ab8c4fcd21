// Rows of a tensor from the input file to their place in the output file, through one thread's kernel
// memory: read (pread) straight into the memory the kernels read, widened there when the input is F16 or
// BF16, quantized there, and written (pwrite) from there. No JavaScript copy and no buffer per tensor:
// a thread needs its kernel memory (a few MiB) whatever the model's size.
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { directKernels } from './kernels/wasm.js';
import { ggmlTypeByName } from './types.js';

/** `values` values (whole blocks of `target`) of a tensor stored as `source` at `inPos` of `inPath`, to `outPos` of `outPath`. */
export interface FileJob {
  target: string;
  source: string;
  inPath: string;
  inPos: number;
  values: number;
  outPath: string;
  outPos: number;
}

/** Input types the kernels read in place. */
export const DIRECT_SOURCES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);

/** Runs file jobs on the calling thread; keeps its files open until close(). */
export class FileJobRunner {
  private readonly fds = new Map<string, number>();

  private fd(path: string, write: boolean): number {
    const key = `${write ? 'w' : 'r'}:${path}`;
    let fd = this.fds.get(key);
    if (fd === undefined) this.fds.set(key, (fd = openSync(path, write ? 'r+' : 'r')));
    return fd;
  }

  /** Runs `job`; returns the bytes written. */
  run(job: FileJob): number {
    const target = ggmlTypeByName(job.target);
    const source = ggmlTypeByName(job.source);
    if (!target || !source || !DIRECT_SOURCES.has(source.name)) throw new Error(`file job: cannot turn ${job.source} into ${job.target}`);
    if (job.values % target.blockSize !== 0) throw new Error(`file job: ${job.values} values are not whole ${target.name} blocks`);
    const d = directKernels();
    const k = d.exports;
    const mem = k.memory.buffer;
    const inFd = this.fd(job.inPath, false);
    const outFd = this.fd(job.outPath, true);
    const inBytesPer = source.bytesPerBlock; // block size 1 for the float types
    let written = 0;
    if (target.name === source.name) {
      // Stored as wanted: the bytes as they are, through the kernel memory as a bounce buffer.
      const total = job.values * inBytesPer;
      const piece = d.sliceValues * 4;
      for (let done = 0; done < total; done += piece) {
        const n = Math.min(piece, total - done);
        readFully(inFd, new Uint8Array(mem, d.f32, n), job.inPos + done, job);
        writeFully(outFd, new Uint8Array(mem, d.f32, n), job.outPos + done);
      }
      return total;
    }
    const slice = Math.floor(d.sliceValues / target.blockSize) * target.blockSize;
    for (let v = 0; v < job.values; v += slice) {
      const n = Math.min(slice, job.values - v);
      if (source.name === 'F32') {
        readFully(inFd, new Uint8Array(mem, d.f32, n * 4), job.inPos + v * 4, job);
      } else {
        readFully(inFd, new Uint8Array(mem, d.raw, n * 2), job.inPos + v * 2, job);
        k[source.name === 'F16' ? 'fp16ToFp32Row' : 'bf16ToFp32Row'](d.raw, d.f32, n);
      }
      let from = d.out;
      let bytes: number;
      if (target.name === 'F32') {
        from = d.f32;
        bytes = n * 4;
      } else {
        k[target.kernel!](d.f32, d.out, n / target.blockSize);
        bytes = (n / target.blockSize) * target.bytesPerBlock;
      }
      writeFully(outFd, new Uint8Array(mem, from, bytes), job.outPos + written);
      written += bytes;
    }
    return written;
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}

function readFully(fd: number, into: Uint8Array, position: number, job: FileJob): void {
  for (let got = 0; got < into.length;) {
    const n = readSync(fd, into, got, into.length - got, position + got);
    if (n === 0) throw new Error(`${job.inPath} ends at byte ${position + got}, before the tensor data it declares`);
    got += n;
  }
}

function writeFully(fd: number, from: Uint8Array, position: number): void {
  for (let done = 0; done < from.length;) done += writeSync(fd, from, done, from.length - done, position + done);
}
