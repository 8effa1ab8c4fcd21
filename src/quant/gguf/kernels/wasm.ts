// The quantizers compiled from assembly/ (AssemblyScript) to kernels.wasm: one instance per thread, fed
// in slices so its memory stays small whatever the tensor size. Two ways in: `rowQuantizer` copies rows
// from JavaScript arrays in and blocks out; `directKernels` gives the memory itself, for a worker that
// reads a file straight into it and writes the blocks from it (no copy in JavaScript).
import { readFileSync } from 'node:fs';
import { InputError } from '../../../util/errors.js';

type BlockKernel = (src: number, dst: number, blocks: number) => void;

export type KernelName =
  | 'quantizeQ4K' | 'quantizeQ5K' | 'quantizeQ6K'
  | 'quantizeQ4_0' | 'quantizeQ4_1' | 'quantizeQ5_0' | 'quantizeQ5_1' | 'quantizeQ8_0'
  | 'fp32ToFp16Row' | 'fp32ToBf16Row';

type KernelExports = Record<KernelName | 'fp16ToFp32Row' | 'bf16ToFp32Row', BlockKernel> & {
  memory: WebAssembly.Memory;
  nearestIntF32(v: number): number;
  fp16Bits(v: number): number;
  fp16Value(h: number): number;
  ioBase(): number;
  reserve(bytes: number): boolean;
};

/** Values per call: 256 KiB of float32 in, at most 128 KiB out (F16 is the widest output per value). */
const SLICE_VALUES = 64 * 1024;
const MAX_OUT_PER_VALUE = 2;

let instance: KernelExports | undefined;

function kernels(): KernelExports {
  if (!instance) {
    const bytes = readFileSync(new URL('./kernels.wasm', import.meta.url));
    // No imports: the module is built without a runtime or an abort hook.
    const k = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as KernelExports;
    if (!k.reserve(SLICE_VALUES * (4 + MAX_OUT_PER_VALUE))) throw new Error('kernels.wasm: cannot grow memory');
    instance = k;
  }
  return instance;
}

export type RowQuantizer = (src: Float32Array, dst: Uint8Array) => void;

/**
 * A row quantizer for one ggml type: checks that src holds whole blocks and dst exactly their bytes,
 * then runs `kernel` slice by slice.
 */
export function rowQuantizer(typeName: string, kernel: KernelName, blockSize: number, blockBytes: number, hint?: string): RowQuantizer {
  const blocksPerSlice = SLICE_VALUES / blockSize;
  return (src, dst) => {
    if (src.length % blockSize !== 0) {
      throw new InputError(`${typeName}: a row of ${src.length} values is not a multiple of ${blockSize}`, {
        expected: `a row length divisible by ${blockSize}`,
        hint,
      });
    }
    const blocks = src.length / blockSize;
    if (dst.length !== blocks * blockBytes) {
      throw new InputError(`${typeName}: ${src.length} values need ${blocks * blockBytes} bytes of blocks, got a buffer of ${dst.length}`, {
        expected: `${blockBytes} bytes per ${blockSize} values`,
      });
    }
    const k = kernels();
    const base = k.ioBase();
    const out = base + SLICE_VALUES * 4;
    for (let b = 0; b < blocks; b += blocksPerSlice) {
      const n = Math.min(blocksPerSlice, blocks - b);
      // Views are made after each call: a memory that grew would have detached older ones.
      new Float32Array(k.memory.buffer, base, n * blockSize).set(src.subarray(b * blockSize, (b + n) * blockSize));
      k[kernel](base, out, n);
      dst.set(new Uint8Array(k.memory.buffer, out, n * blockBytes), b * blockBytes);
    }
  };
}

/** Values per slice of the direct path: 1 MiB of float32. */
const DIRECT_SLICE_VALUES = 256 * 1024;

/**
 * The kernels and three regions of their memory for the direct path: `f32` (DIRECT_SLICE_VALUES float32
 * values the quantizers read), `raw` (the same count of 16-bit values, for F16 / BF16 inputs to widen)
 * and `out` (the blocks, at most 2 bytes per value). Views of `memory.buffer` made after this stay valid:
 * the memory does not grow again.
 */
export interface DirectKernels {
  exports: KernelExports;
  sliceValues: number;
  f32: number;
  raw: number;
  out: number;
}

let direct: DirectKernels | undefined;

export function directKernels(): DirectKernels {
  if (!direct) {
    const k = kernels();
    const f32 = k.ioBase();
    const raw = f32 + DIRECT_SLICE_VALUES * 4;
    const out = raw + DIRECT_SLICE_VALUES * 2;
    if (!k.reserve(DIRECT_SLICE_VALUES * (4 + 2 + MAX_OUT_PER_VALUE))) throw new Error('kernels.wasm: cannot grow memory');
    direct = { exports: k, sliceValues: DIRECT_SLICE_VALUES, f32, raw, out };
  }
  return direct;
}

/** The kernels' own float helpers, for tests: ggml's nearest_int and the fp16 conversions. */
export const kernelFloatHelpers = {
  nearestInt: (v: number): number => kernels().nearestIntF32(v),
  fp32ToFp16: (v: number): number => kernels().fp16Bits(v),
  fp16ToFp32: (h: number): number => kernels().fp16Value(h),
};
