// The K-quant kernels compiled from assembly/kquants.ts (AssemblyScript) to kquants.wasm: one instance
// per thread, fed in slices so its memory stays small whatever the tensor size.
import { readFileSync } from 'node:fs';

interface KquantExports {
  memory: WebAssembly.Memory;
  quantizeQ4K(src: number, dst: number, blocks: number): void;
  quantizeQ5K(src: number, dst: number, blocks: number): void;
  quantizeQ6K(src: number, dst: number, blocks: number): void;
  nearestIntF32(v: number): number;
  fp16Bits(v: number): number;
  fp16Value(h: number): number;
  ioBase(): number;
  reserve(bytes: number): boolean;
}

export type KquantKernel = 'quantizeQ4K' | 'quantizeQ5K' | 'quantizeQ6K';

/** Super-blocks per call: 256 KiB of values in, at most 52.5 KiB of blocks out. */
const SLICE_BLOCKS = 256;
const QK_K = 256;

let instance: KquantExports | undefined;

function kernels(): KquantExports {
  if (!instance) {
    const bytes = readFileSync(new URL('./kquants.wasm', import.meta.url));
    // No imports: the module is built without a runtime or an abort hook.
    instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as KquantExports;
    const k = instance;
    if (!k.reserve(SLICE_BLOCKS * QK_K * 4 + SLICE_BLOCKS * 256)) throw new Error('kquants.wasm: cannot grow memory');
  }
  return instance;
}

/** Runs one kernel over `blocks` super-blocks of src (f32 values) into dst (blockBytes each). */
export function runKquant(kernel: KquantKernel, src: Float32Array, dst: Uint8Array, blockBytes: number): void {
  const k = kernels();
  const base = k.ioBase();
  const out = base + SLICE_BLOCKS * QK_K * 4;
  const blocks = src.length / QK_K;
  for (let b = 0; b < blocks; b += SLICE_BLOCKS) {
    const n = Math.min(SLICE_BLOCKS, blocks - b);
    // Views are made after each call: a memory that grew would have detached older ones.
    new Float32Array(k.memory.buffer, base, n * QK_K).set(src.subarray(b * QK_K, (b + n) * QK_K));
    k[kernel](base, out, n);
    dst.set(new Uint8Array(k.memory.buffer, out, n * blockBytes), b * blockBytes);
  }
}

/** The kernels' own float helpers, for tests: ggml's nearest_int and the fp16 conversions. */
export const kernelFloatHelpers = {
  nearestInt: (v: number): number => kernels().nearestIntF32(v),
  fp32ToFp16: (v: number): number => kernels().fp16Bits(v),
  fp16ToFp32: (h: number): number => kernels().fp16Value(h),
};
