// recipes/vllm-awq.yaml built through the Docker engine on the vLLM stand-in base (no GPU here: built and
// inspected, never run): the AWQ model is quantized inside the build (bake's models stage) and lands in the
// image with its checkpoint; the entrypoint, the vLLM flags from server.settings and the /health check are
// in the image config. The host settings an image cannot carry are checked by test/runtime/vllm.test.ts.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildTarget, connectEngine, inspectImage } from '../../../src/image/docker/index.js';
import { writeBuildFiles } from '../../../src/image/dockerfile/index.js';
import { loadRecipe } from '../../../src/recipe/load.js';
import type { Recipe } from '../../../src/recipe/types.js';
import { writeVllmAwqModels } from '../../support/awq-fixtures.js';
import { projectRoot } from '../../support/cli.js';
import { bakeCliOk, docker, startDockerEnv, type DockerTestEnv } from '../../support/docker-env.js';

const STAND_IN = 'local/vllm-openai:stand-in';
const NODE_IMAGE = 'local/node:20-bookworm-slim';
// Its own builder tag: other worktrees' builds of bake-builder:local carry other sources.
const BAKE_IMAGE = 'bake-builder:vllm-awq-test';

let env: DockerTestEnv;
let dir: string;
let recipe: Recipe;
const built: Record<string, string> = {};

before(async () => {
  env = startDockerEnv();
  dir = await mkdtemp(join(tmpdir(), 'bake-vllm-awq-docker-'));
  await mkdir(join(dir, 'recipes'), { recursive: true });
  await cp(join(projectRoot, 'recipes', 'vllm-awq.yaml'), join(dir, 'recipes', 'vllm-awq.yaml'));
  await writeVllmAwqModels(join(dir, '.bake', 'vllm-awq-models'));
  await bakeCliOk(['lock', 'vllm-awq'], dir);
  recipe = await loadRecipe('vllm-awq', dir);
  await writeBuildFiles({ root: dir, recipe });
  for (const target of ['chat', 'glm-air']) {
    const tag = `bake.test/vllm-awq:${target}`;
    await buildTarget({
      recipe, target, contextDir: dir, dockerfile: 'docker/vllm-awq/Dockerfile', tag, nodeImage: NODE_IMAGE,
      buildArgs: { BAKE_IMAGE, BASE_IMAGE_CHAT: STAND_IN, BASE_IMAGE_GLM_AIR: STAND_IN, SOURCE_DATE_EPOCH: '1700000000' },
    });
    built[target] = tag;
  }
}, { timeout: 30 * 60_000 });

after(async () => {
  for (const tag of Object.values(built)) await docker(['rmi', '-f', tag]);
  if (dir) await rm(dir, { recursive: true, force: true });
  env?.stop();
});

test('built on the stand-in base: entrypoint, vLLM flags, /health check, one model each', async () => {
  const base = (await inspectImage(connectEngine(), STAND_IN))!;
  const expected: Record<string, { flags: string[]; model: string }> = {
    chat: { flags: ['--gpu-memory-utilization', '0.9', '--max-model-len', '4096', '--tensor-parallel-size', '1', '--dtype', 'float16', '--served-model-name', 'chat'], model: 'chat' },
    'glm-air': { flags: ['--gpu-memory-utilization', '0.92', '--max-model-len', '8192', '--tensor-parallel-size', '1', '--dtype', 'float16', '--served-model-name', 'glm-4.5-air'], model: 'glm-air' },
  };
  for (const [target, want] of Object.entries(expected)) {
    const facts = (await inspectImage(connectEngine(), built[target]!))!;
    assert.deepEqual(facts.layers.slice(0, base.layers.length), base.layers, `${target}: built on the stand-in`);
    assert.deepEqual(facts.entrypoint, ['/opt/bake-runtime/bin/node', '/opt/bake-runtime/app/bake-runtime.mjs', 'serve', '--']);
    assert.deepEqual(facts.cmd, want.flags);
    assert.deepEqual(facts.exposedPorts, ['8000/tcp']);
    assert.deepEqual(facts.healthcheck, { test: ['CMD', '/opt/bake-runtime/bin/node', '/opt/bake-runtime/app/bake-runtime.mjs', 'health'], interval: 10, timeout: 5, startPeriod: 600, retries: 3 });
    assert.ok(facts.env.includes('BAKE_SERVER=vllm') && facts.env.includes(`BAKE_MODELS=${want.model}`) && facts.env.includes('BAKE_HEALTH_PATH=/health') && facts.env.includes('BAKE_PORT=8000'), facts.env.join(' '));
    assert.ok(facts.env.includes('NVIDIA_VISIBLE_DEVICES=all'), 'the base image config is kept');
    assert.equal(facts.labels['dev.bake.server'], 'vllm');
    assert.equal(facts.labels['dev.bake.models'], want.model);
  }
});

test('the AWQ checkpoint made inside the build ships whole (compressed-tensors), and the upload as it was', async () => {
  const ls = async (tag: string, path: string) => (await docker(['run', '--rm', '--network', 'none', '--entrypoint', 'cat', tag, path])).stdout;
  const config = JSON.parse(await ls(built.chat!, '/app/models/chat/config.json'));
  assert.equal(config.quantization_config.quant_method, 'compressed-tensors');
  const manifest = JSON.parse(await ls(built.chat!, '/app/models/chat/manifest.json'));
  assert.equal(manifest.quantization.format, 'awq');
  assert.equal(manifest.verification.passed, true);
  assert.deepEqual(manifest.files.map((f: { path: string }) => f.path).sort(), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const glm = JSON.parse(await ls(built['glm-air']!, '/app/models/glm-air/config.json'));
  assert.equal(glm.quantization_config.quant_method, 'awq');
  assert.equal(glm.quantization_config.version, 'gemm');
});
