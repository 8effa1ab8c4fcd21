// Bad input exits 2 naming what to fix; a failing `bake doctor` check exits non-zero saying how to fix
// it. Each case runs the CLI as a user would, on a small project in a temp folder.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DataType, makeNode, makeTensor, writeOnnx, type ModelProto } from '../../src/formats/onnx/index.js';
import { bake, sharedModels } from '../support/cli.js';

const cleanup: string[] = [];
after(async () => {
  for (const d of cleanup) await rm(d, { recursive: true, force: true });
});
async function tmp(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `bake-${prefix}-`));
  cleanup.push(d);
  return d;
}

/** A project with one local ONNX model `m` (silero VAD, 1.3 MB) under the given recipe fragment. */
async function project(model: string): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = await tmp('exit');
  await mkdir(join(dir, 'recipes'));
  await mkdir(join(dir, 'models', 'm'), { recursive: true });
  await copyFile(join(sharedModels(), 'silero-vad', 'silero_vad_16k_op15.onnx'), join(dir, 'models', 'm', 'model.onnx'));
  await writeFile(join(dir, 'recipes', 't.yaml'), [
    'image: { name: bake.local/t, version: 0.1.0 }',
    'models:',
    '  - id: m',
    '    path: ../models/m',
    '    files: [model.onnx]',
    ...model.trim().split('\n').map((l) => `    ${l}`),
    'targets: { cpu: { base: scratch } }',
    '',
  ].join('\n'));
  const env = { BAKE_STORE: join(dir, 'store') };
  const locked = await bake(['-C', dir, 'lock', 't'], { cwd: dir, env });
  assert.equal(locked.code, 0, locked.stderr);
  return { dir, env };
}

const SILERO_DIMS = "inputs: { dims: { 'state:1': 1, 'input:1': 512, sequence: 512 } }";

test('verify.eval: a missing file exits 2 naming models.<id>.verify.eval and the path; an absolute path works', async () => {
  const { dir, env } = await project(`quantize: { format: onnx-int8 }\nverify: { eval: texts/missing.txt, ${SILERO_DIMS} }`);
  const r = await bake(['-C', dir, 'verify', 't'], { cwd: dir, env });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /models\.m\.verify\.eval/);
  assert.match(r.stderr, new RegExp(`${join(dir, 'recipes', 'texts', 'missing.txt')} does not exist`));

  const evalFile = join(await tmp('eval'), 'eval.txt');
  await writeFile(evalFile, 'one sample\nanother sample\n');
  const abs = await project(`quantize: { format: onnx-int8 }\nverify: { eval: ${evalFile}, ${SILERO_DIMS} }`);
  const ok = await bake(['-C', abs.dir, 'verify', 't'], { cwd: abs.dir, env: abs.env });
  assert.equal(ok.code, 0, ok.stderr);
});

test('a SOURCE_DATE_EPOCH that is not a whole number of seconds exits 2 naming the variable', async () => {
  for (const bad of ['yesterday', '-5', '1e9', '99999999999999999999']) {
    const r = await bake(['plan', 'demo'], { env: { SOURCE_DATE_EPOCH: bad } });
    assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, /SOURCE_DATE_EPOCH/);
    assert.match(r.stderr, /fix: /);
  }
});

test('static calibration of a model onnxruntime refuses, with preprocess: false, exits 2 naming the model file', async () => {
  const { dir, env } = await project('quantize: { format: onnx-int8, mode: static, preprocess: false }\nverify: { skip: true }');
  // Replace the locked model by one whose MatMul shapes disagree (x is [1,4], W is [5,3]); relock.
  const vi = (name: string, d: number[]) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: d.map((x) => ({ dim_value: x })) } } } });
  const model: ModelProto = {
    ir_version: 8, opset_import: [{ domain: '', version: 17 }],
    graph: { name: 'bad', node: [makeNode('MatMul', ['x', 'W'], ['y'], 'mm')], initializer: [makeTensor('W', [5, 3], new Float32Array(15).fill(0.5))], input: [vi('x', [1, 4])], output: [vi('y', [1, 3])], value_info: [] },
  };
  await writeOnnx(model, join(dir, 'models', 'm', 'model.onnx'));
  const relock = await bake(['-C', dir, 'lock', 't', '--update', 'm'], { cwd: dir, env });
  assert.equal(relock.code, 0, relock.stderr);
  const r = await bake(['-C', dir, 'quantize', 't'], { cwd: dir, env });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /model\.onnx/);
  assert.match(r.stderr, /fix: /);
});

async function listen(server: Server): Promise<number> {
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return (server.address() as AddressInfo).port;
}

test('bake doctor exits 6 when a check fails, and the failing check says how to fix it', async () => {
  const env = { DOCKER_HOST: 'unix:///nonexistent/docker.sock', BAKE_STORE: await tmp('doctor') };
  // A port nobody listens on: bind one, then close it.
  const closed = createServer();
  const port = await listen(closed);
  await new Promise((res) => closed.close(res));
  const down = await bake(['doctor', '--registry', `127.0.0.1:${port}`], { env });
  assert.equal(down.code, 6, down.stdout + down.stderr);
  assert.match(down.stdout, /^fail registry: .*\n\s+fix: /m);

  // A server that answers, but not as a registry does.
  const notRegistry = createServer((_req, res) => res.writeHead(500).end());
  const p = await listen(notRegistry);
  try {
    const r = await bake(['--json', 'doctor', '--registry', `127.0.0.1:${p}`], { env });
    assert.equal(r.code, 6, r.stdout + r.stderr);
    const registry = (JSON.parse(r.stdout).checks as { name: string; status: string; fix?: string }[]).find((c) => c.name === 'registry')!;
    assert.equal(registry.status, 'fail');
    assert.match(registry.fix ?? '', /registry/);
  } finally {
    notRegistry.close();
  }

  // No engine is a failed check too; a daemonless user leaves it out, and only warnings remain: exit 0.
  const noEngine = await bake(['doctor'], { env });
  assert.equal(noEngine.code, 6, noEngine.stdout + noEngine.stderr);
  assert.match(noEngine.stdout, /^fail docker engine: no Docker engine answers at unix:\/\/\/nonexistent\/docker\.sock.*\n\s+fix: start dockerd/m);
  const warn = await bake(['doctor', '--daemonless'], { env });
  assert.equal(warn.code, 0, warn.stdout + warn.stderr);
});
