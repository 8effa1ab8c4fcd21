// The float helpers under the K-quant kernels: the shared fp16 conversion (exhaustively, as the kernels
// rely on it for every scale), the WebAssembly kernels' own copy of it and of ggml's nearest_int, and
// input checks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FP16_TO_FP32, fp32ToFp16 } from '../../../src/formats/fp16.js';

const fp16BitsToFp32 = (h: number): number => FP16_TO_FP32[h]!;
const fp32ToFp16Bits = fp32ToFp16;
import { kernelFloatHelpers } from '../../../src/quant/gguf/kernels/wasm.js';
import { dequantizeRowQ4_K, quantizeRowQ4_K, quantizeRowQ5_K, quantizeRowQ6_K } from '../../../src/quant/gguf/kquants.js';
import { InputError } from '../../../src/util/errors.js';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../support/cli.js';

const run = promisify(execFile);

test('fp16: every half round-trips and every midpoint rounds to even', () => {
  for (let h = 0; h < 0x10000; h++) {
    const exp = (h >>> 10) & 0x1f;
    const v = fp16BitsToFp32(h);
    if (exp === 0x1f && (h & 0x3ff) !== 0) {
      assert.ok(Number.isNaN(v));
      assert.equal(fp32ToFp16Bits(v) & 0x7fff, 0x7e00);
      continue;
    }
    assert.equal(fp32ToFp16Bits(v), h, `half 0x${h.toString(16)}`);
    // Midpoint to the next magnitude up (within finite positives and negatives alike).
    if ((h & 0x7fff) < 0x7bff) {
      const next = fp16BitsToFp32(h + 1);
      const mid = (v + next) / 2;
      if (Math.fround(mid) === mid) {
        const even = (h & 1) === 0 ? h : h + 1;
        assert.equal(fp32ToFp16Bits(mid), even, `midpoint above 0x${h.toString(16)}`);
        // Just above the midpoint rounds away from h, just below rounds to h.
        const up = new Float32Array([mid]);
        const bits = new Uint32Array(up.buffer);
        bits[0]! += 1;
        assert.equal(fp32ToFp16Bits(up[0]!), h + 1);
        bits[0]! -= 2;
        assert.equal(fp32ToFp16Bits(up[0]!), h);
      }
    }
  }
  assert.equal(fp32ToFp16Bits(65520), 0x7c00); // rounds up to infinity
  assert.equal(fp32ToFp16Bits(65519), 0x7bff);
  assert.equal(fp32ToFp16Bits(-1e-10), 0x8000);
  assert.equal(fp32ToFp16Bits(2 ** -25), 0x0000); // exact half of the smallest subnormal: ties to even (0)
  assert.equal(fp32ToFp16Bits(Math.fround(2 ** -25 * 1.0000001)), 0x0001);
});

const { nearestInt } = kernelFloatHelpers;

test('the committed kernels.wasm is what its AssemblyScript source compiles to (npm run build:wasm)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-wasm-'));
  try {
    const script = JSON.parse(await readFile(join(projectRoot, 'package.json'), 'utf8')).scripts['build:wasm'] as string;
    const args = script.split(' ').slice(1);
    const out = args.indexOf('--outFile');
    const committed = join(projectRoot, args[out + 1]!);
    args[out + 1] = join(dir, 'kernels.wasm');
    await run(process.execPath, [join(projectRoot, 'node_modules', 'assemblyscript', 'bin', 'asc.js'), ...args], { cwd: projectRoot });
    assert.ok((await readFile(committed)).equals(await readFile(join(dir, 'kernels.wasm'))), `${committed} is stale: run npm run build:wasm`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the kernels\' fp16 conversion (WebAssembly) is src/formats/fp16.ts bit for bit', () => {
  const bits = new Uint32Array(1);
  const f = new Float32Array(bits.buffer);
  for (let h = 0; h < 0x10000; h++) {
    const v = kernelFloatHelpers.fp16ToFp32(h);
    f[0] = v;
    const ours = bits[0]!;
    f[0] = fp16BitsToFp32(h);
    assert.equal(ours, bits[0]!, `half 0x${h.toString(16)}`);
    // Both directions, on every half and on the float32 values around each one.
    for (const d of [-1, 0, 1, 0xfff, 0x1000, 0x1001]) {
      bits[0] = ((ours + d) >>> 0);
      const x = f[0]!;
      assert.equal(kernelFloatHelpers.fp32ToFp16(x), fp32ToFp16Bits(x), `float32 bits 0x${bits[0]!.toString(16)}`);
    }
  }
});

test('nearestInt: half to even, and ggml mantissa behaviour outside +-2^22', () => {
  assert.equal(nearestInt(0.5), 0);
  assert.equal(nearestInt(1.5), 2);
  assert.equal(nearestInt(2.5), 2);
  assert.equal(nearestInt(-0.5), 0);
  assert.equal(nearestInt(-1.5), -2);
  assert.equal(nearestInt(-2.5), -2);
  assert.equal(nearestInt(Math.fround(0.49999997)), 0);
  assert.equal(nearestInt(3.7), 4);
  assert.equal(nearestInt(-3.7), -4);
  assert.equal(nearestInt(4194303), 4194303);
  // 4194304 + 1.5*2^23 = 2^24: the mantissa is 0, so ggml returns -2^22.
  assert.equal(nearestInt(4194304), -4194304);
  assert.equal(nearestInt(Number.NaN), 0);
});

test('kernels refuse rows that are not whole super-blocks and wrong buffer sizes', () => {
  assert.throws(() => quantizeRowQ4_K(new Float32Array(100), new Uint8Array(144)), InputError);
  assert.throws(() => quantizeRowQ5_K(new Float32Array(256), new Uint8Array(175)), /176 bytes/);
  assert.throws(() => quantizeRowQ6_K(new Float32Array(512), new Uint8Array(210)), /420 bytes/);
  assert.throws(() => dequantizeRowQ4_K(new Uint8Array(144), new Float32Array(255)), InputError);
});

test('Q4_K: an all-zero block is all zero bytes and dequantizes to zeros', () => {
  const dst = new Uint8Array(144).fill(0xaa);
  quantizeRowQ4_K(new Float32Array(256), dst);
  assert.ok(dst.every((b) => b === 0));
  const back = new Float32Array(256).fill(1);
  dequantizeRowQ4_K(dst, back);
  assert.ok(back.every((v) => v === 0));
});
