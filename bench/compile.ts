// Benchmarks run bake compiled to JavaScript (as it ships), not through tsx: tsx's loader would be
// billed to the measured process (CPU time, peak RSS) and to every worker thread.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..');

/**
 * Compiles `entries` (paths relative to the project root, with what they import) into
 * node_modules/.cache/bake-bench-<name>/, so package imports resolve; returns the compiled entries' paths.
 */
export async function compileBench(name: string, entries: string[]): Promise<string[]> {
  const out = join(root, 'node_modules', '.cache', `bake-bench-${name}`);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'package.json'), '{"type":"module"}\n');
  await run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '--outDir', out, '--rootDir', root,
    '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--strict', '--skipLibCheck', '--types', 'node',
    ...entries.map((e) => join(root, e))], { maxBuffer: 1 << 24 });
  // tsc leaves non-TypeScript files behind; the kernels load their WebAssembly beside them.
  const kernels = join('src', 'quant', 'gguf', 'kernels', 'kernels.wasm');
  await mkdir(join(out, 'src', 'quant', 'gguf', 'kernels'), { recursive: true });
  await copyFile(join(root, kernels), join(out, kernels));
  return entries.map((e) => join(out, relative(root, join(root, e)).replace(/\.ts$/, '.js')));
}

/** Runs a command under /usr/bin/time: its stdout, wall seconds, CPU seconds (user + system) and peak RSS in bytes. */
export async function timedRun(cmd: string, args: string[]): Promise<{ stdout: string; seconds: number; cpuSeconds: number; rss: number }> {
  const t0 = process.hrtime.bigint();
  const { stdout, stderr } = await run('/usr/bin/time', ['-f', 'BENCH_TIME %M %U %S', cmd, ...args], { maxBuffer: 1 << 26 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const m = /BENCH_TIME (\d+) ([0-9.]+) ([0-9.]+)/.exec(stderr);
  return { stdout, seconds, cpuSeconds: m ? Number(m[2]) + Number(m[3]) : Number.NaN, rss: m ? Number(m[1]) * 1024 : Number.NaN };
}
