// The toolchain that shapes a step's bytes besides bake's own step code: an upgrade of one of these
// must re-run exactly the steps that use it, so each step names the parts it depends on and their
// versions enter its cache key.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageDir, packageVersion } from '../util/packages.js';

export type ToolName = 'onnxruntime' | 'llama.cpp' | 'gguf-kernels' | 'awq-kernels';

export type Toolchain = Record<ToolName, string>;

/** onnxruntime-node's version: its graph optimizer folds constants for quantize, its kernels run verify. */
function onnxruntimeVersion(): string {
  return `onnxruntime-node@${packageVersion('onnxruntime-node')}`;
}

/**
 * The llama.cpp commit node-llama-cpp ships (its source bundle's HEAD, read from the bundle header
 * without running git) plus node-llama-cpp's own version: verify runs that build.
 */
function llamaCppVersion(): string {
  const dir = packageDir('node-llama-cpp');
  const version = packageVersion('node-llama-cpp');
  let commit = 'unknown';
  try {
    const fd = openSync(join(dir, 'llama', 'gitRelease.bundle'), 'r');
    const head = Buffer.alloc(4096);
    const n = readSync(fd, head, 0, head.length, 0);
    closeSync(fd);
    // "# v2 git bundle\n<sha> <ref>\n...": the first ref line names the commit.
    commit = /^([0-9a-f]{40}) /m.exec(head.subarray(0, n).toString('latin1'))?.[1] ?? commit;
  } catch {
    // no bundle: the version alone identifies the prebuilt binaries
  }
  return `node-llama-cpp@${version}+llama.cpp@${commit}`;
}

/** The GGUF row quantizers are one WebAssembly module: its digest is their version. */
function ggufKernelsVersion(): string {
  const wasm = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'quant', 'gguf', 'kernels', 'kernels.wasm'));
  return `kernels.wasm@sha256:${createHash('sha256').update(wasm).digest('hex')}`;
}

/**
 * AWQ's kernels, search and packers and the forward-pass graphs are bake's own TypeScript: the digest of
 * their source files is their version, so a change to any of them re-runs exactly the AWQ steps.
 */
function awqKernelsVersion(): string {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const h = createHash('sha256');
  for (const sub of ['quant/awq', 'model/llama']) {
    const dir = join(root, sub);
    for (const f of readdirSync(dir).filter((n) => /\.(ts|js)$/.test(n)).sort()) h.update(`${sub}/${f}\0`).update(readFileSync(join(dir, f)));
  }
  return `awq@sha256:${h.digest('hex')}`;
}

let detected: Toolchain | undefined;

/** The toolchain installed with this bake, read once per process. */
export function detectToolchain(): Toolchain {
  detected ??= { onnxruntime: onnxruntimeVersion(), 'llama.cpp': llamaCppVersion(), 'gguf-kernels': ggufKernelsVersion(), 'awq-kernels': awqKernelsVersion() };
  return detected;
}

/** The versions of the parts `tools` a step depends on, for its key (sorted: stable bytes). */
export function toolVersions(toolchain: Toolchain, tools: readonly ToolName[]): Record<string, string> {
  return Object.fromEntries([...tools].sort().map((t) => [t, toolchain[t]]));
}
