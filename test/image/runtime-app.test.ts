// The runtime app as images carry it: the bundle starts without onnxruntime beside it (llama-server and
// vLLM images have none); onnx servers' images carry it beside the bundle (their sessions: test/image/docker).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeRuntimeApp } from '../../src/image/runtime-app.js';

test('the bundled runtime app starts without onnxruntime beside it, and loads it on first use where it is', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-runtime-app-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const lean = join(dir, 'lean');
  const full = join(dir, 'full');
  await writeRuntimeApp(lean, ['app']);
  await writeRuntimeApp(full, ['app', 'onnxruntime']);
  const env = { ...process.env, BAKE_MODELS_DIR: join(dir, 'no-models') };
  // No models: the app runs and says so (exit 2), instead of failing to resolve onnxruntime-node.
  const r = spawnSync(process.execPath, [join(lean, 'app', 'bake-runtime.mjs'), 'check'], { cwd: dir, env, encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /no models under/);
  assert.doesNotMatch(r.stderr, /ERR_MODULE_NOT_FOUND|onnxruntime/);
  // Where onnxruntime ships beside the bundle (onnx servers), it is the package the app loads.
  const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(join(full, 'app', 'node_modules', 'onnxruntime-node'))}); console.log('ok')`], { encoding: 'utf8' });
  assert.equal(load.stdout.trim(), 'ok', load.stderr);
});
