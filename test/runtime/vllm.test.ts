// vLLM targets: the recipe's run settings become `vllm serve` flags in the image's CMD (validated), the
// health check asks /health, the host settings (ipc=host, memlock/stack ulimits, GPUs) are data for compose
// and `bake inspect`; the runtime app starts vllm with the recipe's served name (once).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderDockerfile } from '../../src/image/dockerfile/index.js';
import { loadRecipe, parseRecipe } from '../../src/recipe/load.js';
import { runtimeImage } from '../../src/runtime/contract.js';
import { serve } from '../../src/runtime/serve.js';
import { composeServiceFragment, dockerRunFlags } from '../../src/runtime/vllm.js';
import { sha256Bytes } from '../../src/util/digest.js';
import { InputError } from '../../src/util/errors.js';
import { prettyJson } from '../../src/util/json.js';
import { bake, projectRoot } from '../support/cli.js';

const FLAGS = ['--gpu-memory-utilization', '0.9', '--max-model-len', '4096', '--tensor-parallel-size', '1', '--dtype', 'float16', '--served-model-name', 'chat'];

test('recipes/vllm-awq.yaml: settings as flags, /health on :8000, host settings, one model per target', async () => {
  const recipe = await loadRecipe('vllm-awq', projectRoot);
  const chat = recipe.targets.find((t) => t.name === 'chat')!;
  assert.deepEqual(chat.models, ['chat']);
  assert.equal(chat.server.kind, 'vllm');
  const rt = runtimeImage(chat)!;
  assert.deepEqual(rt.cmd, FLAGS);
  assert.deepEqual(rt.entrypoint, ['/opt/bake-runtime/bin/node', '/opt/bake-runtime/app/bake-runtime.mjs', 'serve', '--']);
  assert.equal(rt.exposedPort, 8000);
  assert.equal(rt.env.BAKE_HEALTH_PATH, '/health');
  assert.deepEqual(rt.healthcheck, { test: ['CMD', '/opt/bake-runtime/bin/node', '/opt/bake-runtime/app/bake-runtime.mjs', 'health'], interval: 10, timeout: 5, startPeriod: 600, retries: 3 });
  assert.deepEqual(chat.server.host, { ipc: 'host', ulimits: { memlock: -1, stack: 67108864 }, gpus: 1 });
  assert.deepEqual(composeServiceFragment(chat.server.host!), {
    ipc: 'host', ulimits: { memlock: { soft: -1, hard: -1 }, stack: 67108864 },
    deploy: { resources: { reservations: { devices: [{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }] } } },
  });
  assert.deepEqual(dockerRunFlags(chat.server.host!), ['--ipc=host', '--ulimit', 'memlock=-1', '--ulimit', 'stack=67108864', '--gpus', '1']);
  const glm = recipe.targets.find((t) => t.name === 'glm-air')!;
  assert.deepEqual(glm.models, ['glm-air']);
  assert.ok(runtimeImage(glm)!.cmd.includes('glm-4.5-air'));

  const dockerfile = renderDockerfile({ recipe, recipePath: 'recipes/vllm-awq.yaml' });
  assert.match(dockerfile, /^ARG BASE_IMAGE_CHAT=vllm\/vllm-openai:v0\.10\.1$/m);
  assert.match(dockerfile, /^ARG BASE_IMAGE_GLM_AIR=vllm\/vllm-openai:v0\.10\.1$/m);
  assert.ok(dockerfile.includes(`CMD ${JSON.stringify(FLAGS)}`));
  assert.match(dockerfile, /HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 CMD \["\/opt\/bake-runtime\/bin\/node","\/opt\/bake-runtime\/app\/bake-runtime\.mjs","health"\]/);
  assert.match(dockerfile, /EXPOSE 8000/);
});

test('bake inspect shows each image: entrypoint, args, health check and the host settings as compose keys and docker run flags', async () => {
  const r = await bake(['-C', projectRoot, '--json', 'inspect', 'vllm-awq'], { cwd: projectRoot });
  assert.equal(r.code, 0, r.stderr);
  const images = JSON.parse(r.stdout).images as Record<string, unknown>[];
  const chat = images.find((i) => i.target === 'chat')!;
  assert.deepEqual(chat.cmd, FLAGS);
  assert.deepEqual(chat.docker_run_flags, ['--ipc=host', '--ulimit', 'memlock=-1', '--ulimit', 'stack=67108864', '--gpus', '1']);
  assert.equal((chat.compose_service as { ipc: string }).ipc, 'host');
});

const RECIPE = (target: string) => `image: { name: x/y }\nmodels:\n  - id: m\n    path: ../m\n    quantize: { format: none }\ntargets:\n${target}`;

test('settings are validated: ranges by the schema, vLLM-only, no flag given twice', async () => {
  const file = join(tmpdir(), 'vllm-settings.yaml');
  await assert.rejects(parseRecipe(RECIPE('  gpu:\n    server: { kind: vllm, settings: { gpu_memory_utilization: 1.5 } }\n'), file), (e: unknown) => e instanceof InputError && /gpu_memory_utilization/.test(e.message));
  await assert.rejects(parseRecipe(RECIPE('  gpu:\n    server: { kind: vllm, settings: { dtype: int8 } }\n'), file), (e: unknown) => e instanceof InputError && /dtype/.test(e.message));
  await assert.rejects(parseRecipe(RECIPE('  gpu:\n    server: { kind: vllm, settings: { max_len: 10 } }\n'), file), (e: unknown) => e instanceof InputError && /max_len/.test(e.message));
  await assert.rejects(parseRecipe(RECIPE('  cpu:\n    server: { kind: onnx, settings: { max_model_len: 4096 } }\n'), file), (e: unknown) => e instanceof InputError && /this target runs onnx, which takes no run settings/.test(e.message));
  await assert.rejects(parseRecipe(RECIPE('  gpu:\n    server: { kind: vllm, settings: { ctx-size: 4096 } }\n'), file), (e: unknown) => e instanceof InputError && /server\.settings\.ctx-size: not a vLLM run setting/.test(e.message));
  await assert.rejects(parseRecipe(RECIPE('  gpu:\n    server: { kind: vllm, settings: { max_model_len: 4096 }, args: ["--max-model-len=8192"] }\n'), file), (e: unknown) => e instanceof InputError && /--max-model-len is also set by server\.settings/.test(e.message));
  const ok = await parseRecipe(RECIPE('  gpu:\n    server: { kind: vllm, settings: { tensor_parallel_size: 2 }, args: ["--enforce-eager"] }\n'), file);
  assert.deepEqual(runtimeImage(ok.targets[0]!)!.cmd, ['--tensor-parallel-size', '2', '--enforce-eager']);
  assert.equal(ok.targets[0]!.server.host!.gpus, 2);
  // No settings: all GPUs reserved, no flags.
  const bare = await parseRecipe(RECIPE('  gpu:\n    server: { kind: vllm }\n'), file);
  assert.deepEqual(runtimeImage(bare.targets[0]!)!.cmd, []);
  assert.equal(bare.targets[0]!.server.host!.gpus, 'all');
});

test('the runtime starts vllm serve with the recipe\'s served name once (the model id otherwise)', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'bake-vllm-serve-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const data = Buffer.from('{}\n');
  await mkdir(join(root, 'chat'), { recursive: true });
  await writeFile(join(root, 'chat', 'config.json'), data);
  const files = [{ path: 'config.json', sha256: sha256Bytes(data), size: data.length }];
  await writeFile(join(root, 'chat', 'manifest.json'), prettyJson({ schema: 'bake.model.v1', id: 'chat', source: { type: 'path', repo: '../chat', revision: 'local', commit: 'c'.repeat(64), files }, files, quantization: { format: 'awq' }, verification: { skipped: true } }));
  // A stand-in vllm that prints its arguments and exits.
  const fake = join(root, 'vllm');
  await writeFile(fake, '#!/bin/sh\necho "$@" > "$(dirname "$0")/args.txt"\n', { mode: 0o755 });
  for (const [extra, name] of [[['--dtype', 'float16', '--served-model-name', 'my-chat'], 'my-chat'], [['--dtype', 'float16'], 'chat']] as const) {
    const s = await serve({ server: 'vllm', root, port: 8000, extraArgs: [...extra], env: { BAKE_VLLM: fake } });
    assert.equal(await s.done, 0);
    const args = (await readFile(join(root, 'args.txt'), 'utf8')).trim().split(' ');
    assert.deepEqual(args.slice(0, 2), ['serve', join(root, 'chat')]);
    assert.equal(args.filter((a) => a === '--served-model-name').length, 1, args.join(' '));
    assert.equal(args[args.indexOf('--served-model-name') + 1], name);
    assert.ok(args.includes('--port') && args[args.indexOf('--port') + 1] === '8000');
  }
});
