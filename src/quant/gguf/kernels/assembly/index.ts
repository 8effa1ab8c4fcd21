// AssemblyScript entry, compiled to ../kernels.wasm by `npm run build:wasm`: ggml's row quantizers for
// every type bake writes, each `(src, dst, blocks)` over float32 values and encoded blocks in this
// module's memory, and the F16 / BF16 widening of inputs. The JavaScript side (../wasm.ts) either copies
// rows in and blocks out in slices, or (workers, ../worker.ts) reads the file straight into this memory
// and writes the blocks from it.

export { quantizeQ4K, quantizeQ5K, quantizeQ6K } from './kquants';
export { quantizeQ4_0, quantizeQ4_1, quantizeQ5_0, quantizeQ5_1, quantizeQ8_0 } from './legacy';
export { fp32ToFp16Row, fp32ToBf16Row, fp16ToFp32Row, bf16ToFp32Row } from './half';

import { fp16ToFp32, fp32ToFp16, nearestInt } from './float';

// For tests: the float helpers, checked against ggml's edge cases and src/formats/fp16.ts.
export function nearestIntF32(v: f32): i32 {
  return nearestInt(v);
}
export function fp16Bits(v: f32): u32 {
  return fp32ToFp16(v);
}
export function fp16Value(h: u32): f32 {
  return fp16ToFp32(h);
}

/** Start of the caller's buffer (after the static scratch), 16-byte aligned. */
export function ioBase(): usize {
  return (__heap_base + 15) & ~(<usize>15);
}

/** Grows memory so `bytes` fit from ioBase(); returns false when the engine refuses. */
export function reserve(bytes: usize): bool {
  const end = ioBase() + bytes;
  const have = <usize>memory.size() << 16;
  if (end <= have) return true;
  return memory.grow(<i32>((end - have + 0xffff) >> 16)) >= 0;
}
