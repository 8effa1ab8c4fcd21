// bake's runtime app as files: the bundled app (src/runtime/main.ts and what it imports, one file),
// onnxruntime-node for onnx servers, and a node binary for bases without one. Laid out as under
// RUNTIME_DIR; written by the daemonless image writer (as a layer) and by the bake builder image
// (`bake runtime-app`, which the Dockerfile's runtime stages COPY from), so both images hold the same.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, rename, stat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../util/fs.js';
import { packageDir, packageVersion } from '../util/packages.js';
import { RUNTIME_APP, RUNTIME_DIR, RUNTIME_NODE, RUNTIME_ONNXRUNTIME, type RuntimePart } from '../runtime/contract.js';

/** bake's install folder (src/ or dist/ is one level below this file's folder). */
const BAKE_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The app as one ESM file; onnxruntime-node stays a package because it loads a native binding. */
export async function bundleRuntimeApp(): Promise<Uint8Array> {
  const { build } = await import('esbuild');
  const main = ['src/runtime/main.ts', 'dist/runtime/main.js'].map((p) => join(BAKE_ROOT, p)).find((p) => existsSync(p))!;
  const out = await build({
    entryPoints: [main],
    absWorkingDir: BAKE_ROOT,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // onnxruntime-node (and the onnxruntime-common it shares with transformers.js) ship beside the bundle,
    // in onnx servers' images only: loaded on first use, so the other images start without them.
    plugins: [stubPackages, lazyOnnxruntime],
    write: false,
    logLevel: 'warning',
    legalComments: 'none',
    // Bundled CommonJS dependencies call require(); ESM has none.
    banner: { js: "import { createRequire as __bakeRequire } from 'node:module'; const require = __bakeRequire(import.meta.url);" },
  });
  return out.outputFiles[0]!.contents;
}

/**
 * Packages the runtime's code reaches only on paths it never takes in an image: transformers.js imports
 * sharp for images (it only tokenizes here) and the pipeline's GGUF verifier imports node-llama-cpp (a
 * quantize at start runs fetch and quantize only). Stubs that throw if called keep their native parts out.
 */
const STUBBED = ['sharp', 'node-llama-cpp'];
const stubPackages = {
  name: 'bake-runtime-stubs',
  setup(build: { onResolve: Function; onLoad: Function }) {
    build.onResolve({ filter: new RegExp(`^(${STUBBED.join('|')})$`) }, (args: { path: string }) => ({ path: args.path, namespace: 'bake-stub' }));
    build.onLoad({ filter: /.*/, namespace: 'bake-stub' }, (args: { path: string }) => ({
      contents: `const unavailable = () => { throw new Error(${JSON.stringify(`${args.path} is not part of bake's runtime app`)}); };\nexport default unavailable;\nexport const getLlama = unavailable, LlamaLogLevel = {};\n`,
      loader: 'js',
    }));
  },
};

/**
 * An external ESM import is a top-level statement of the bundle, which fails to load where the package is
 * absent (llama-server and vLLM images carry no onnxruntime). bake uses InferenceSession.create and `new
 * Tensor` (transformers.js: `new Tensor`), so these stand-ins require the real package the first time one
 * is called, from beside the bundle.
 */
const lazyOnnxruntime = {
  name: 'bake-lazy-onnxruntime',
  setup(build: { onResolve: Function; onLoad: Function }) {
    build.onResolve({ filter: /^onnxruntime-(node|common)$/ }, (args: { path: string }) => ({ path: args.path, namespace: 'bake-lazy' }));
    build.onLoad({ filter: /.*/, namespace: 'bake-lazy' }, (args: { path: string }) => ({
      contents: [
        "import { createRequire } from 'node:module';",
        'const load = createRequire(import.meta.url);',
        'let real;',
        `const pkg = () => (real ??= load(${JSON.stringify(args.path)}));`,
        'export const InferenceSession = { create: (...a) => pkg().InferenceSession.create(...a) };',
        'export function Tensor(...a) { return new (pkg().Tensor)(...a); }',
        'export const env = new Proxy({}, { get: (_, k) => pkg().env[k], set: (_, k, v) => ((pkg().env[k] = v), true) });',
      ].join('\n'),
      loader: 'js',
    }));
  },
};

/** onnxruntime-node's files for linux-x64 only (the package ships every platform's binaries). */
const ORT_KEEP = /^(package\.json|dist\/.*|bin\/napi-v6\/linux\/x64\/.*)$/;
const ORT_COMMON_KEEP = /^(package\.json|dist\/.*)$/;

async function listFiles(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p, base)));
    else if (e.isFile()) out.push(relative(base, p).split('\\').join('/'));
  }
  return out.sort();
}

async function copyFiltered(from: string, to: string, keep: RegExp): Promise<void> {
  for (const rel of await listFiles(from)) {
    if (!keep.test(rel)) continue;
    await mkdir(dirname(join(to, rel)), { recursive: true });
    await copyFile(join(from, rel), join(to, rel));
  }
}

/** Paths relative to RUNTIME_DIR (the layer or folder root). */
const inRuntime = (abs: string) => abs.slice(RUNTIME_DIR.length + 1);

/**
 * Writes the runtime app's parts into `outDir` (which stands for RUNTIME_DIR). Returns a digest of
 * what was written: equal digests mean equal folders.
 */
export async function writeRuntimeApp(outDir: string, parts: readonly RuntimePart[]): Promise<string> {
  const hash = createHash('sha256');
  if (parts.includes('app')) {
    const bundle = await bundleRuntimeApp();
    await writeFileAtomic(join(outDir, inRuntime(RUNTIME_APP)), bundle);
    hash.update('app\0').update(bundle);
  }
  if (parts.includes('onnxruntime')) {
    const modules = join(outDir, inRuntime(RUNTIME_ONNXRUNTIME));
    await copyFiltered(packageDir('onnxruntime-node'), join(modules, 'onnxruntime-node'), ORT_KEEP);
    await copyFiltered(packageDir('onnxruntime-common'), join(modules, 'onnxruntime-common'), ORT_COMMON_KEEP);
    hash.update(`onnxruntime-node@${packageVersion('onnxruntime-node')}\0`);
  }
  if (parts.includes('node')) {
    const dest = join(outDir, inRuntime(RUNTIME_NODE));
    await mkdir(dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp`;
    await copyFile(process.execPath, tmp);
    await chmod(tmp, 0o755);
    await rename(tmp, dest);
    const st = await stat(process.execPath);
    hash.update(`node@${process.version}:${st.size}\0`);
  }
  hash.update(parts.join(','));
  return hash.digest('hex');
}
