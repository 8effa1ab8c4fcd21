// `bake compose`: the fleet's compose file from the recipe: one service per replica running the
// target's image with the runtime contract's command and health check, restart policy, limits, host
// ports and a GPU reservation for CUDA builds; mistakes are input errors. docker-compose itself reads
// these files in test/image/compose/docker-compose.test.ts (and starts them in the llamacpp test).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { composeFile } from '../../../src/image/compose/index.js';
import { loadRecipe } from '../../../src/recipe/load.js';
import { runtimeImage } from '../../../src/runtime/contract.js';
import { InputError } from '../../../src/util/errors.js';
import { bake, projectRoot } from '../../support/cli.js';
import { FLEET } from '../../support/fleet.js';


let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-compose-'));
  await mkdir(join(dir, 'recipes'));
  await writeFile(join(dir, 'recipes', 'fleet.yaml'), FLEET);
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

test('one service per replica: image by target tag, the CMD as command, health check, restart, limits, consecutive host ports', async () => {
  const recipe = await loadRecipe('fleet', dir);
  const f = composeFile(recipe);
  assert.deepEqual(Object.keys(f.services), ['chat-1', 'chat-2', 'chat-3', 'embed-1', 'embed-2', 'gpu-1']);
  const chat = recipe.targets.find((t) => t.name === 'chat')!;
  const c2 = f.services['chat-2']!;
  assert.equal(c2.image, 'registry.example.com/ml/fleet:2.1.0-chat');
  assert.deepEqual(c2.command, runtimeImage(chat)!.cmd);
  assert.deepEqual(c2.command, ['--ctx-size', '4096', '--ubatch-size', '128', '--flash-attn', 'on']);
  assert.deepEqual(c2.healthcheck, { test: runtimeImage(chat)!.healthcheck!.test, interval: '10s', timeout: '5s', start_period: '60s', retries: 3 });
  assert.equal(c2.restart, 'unless-stopped');
  assert.equal(c2.mem_limit, '2g');
  assert.equal(c2.cpus, 1.5);
  assert.deepEqual(c2.ports, ['8081:8080']);
  assert.equal(c2.deploy, undefined, 'a CPU build reserves no GPU');
  assert.deepEqual(c2.labels, { 'dev.bake.recipe': 'fleet', 'dev.bake.target': 'chat', 'dev.bake.replica': '2' });
  assert.deepEqual(f.services['embed-2']!.ports, ['9001:8081']);
  assert.equal(f.services['embed-1']!.restart, 'always');
  assert.deepEqual(f.services['embed-1']!.command, ['--embedding']);
  assert.equal(f.services['embed-1']!.mem_limit, undefined);
  // A CUDA build of llama-server: its base and a GPU reservation.
  const gpu = recipe.targets.find((t) => t.name === 'gpu')!;
  assert.equal(gpu.base, 'ghcr.io/ggml-org/llama.cpp:server-cuda');
  assert.deepEqual(f.services['gpu-1']!.deploy, { resources: { reservations: { devices: [{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }] } } });
  assert.equal(f.services['gpu-1']!.ports, undefined, 'no deploy.port: not published');
});

test('replica and image overrides; port clashes, unknown targets and an empty fleet are input errors', async () => {
  const recipe = await loadRecipe('fleet', dir);
  const f = composeFile(recipe, { replicas: { chat: 1, embed: 1, gpu: 0 }, images: { embed: 'local/embed:test' } });
  assert.deepEqual(Object.keys(f.services), ['chat-1', 'embed-1']);
  assert.equal(f.services['embed-1']!.image, 'local/embed:test');
  assert.throws(() => composeFile(recipe, { replicas: { tpu: 1 } }), (e: unknown) => e instanceof InputError && /no target "tpu"/.test(e.message));
  assert.throws(() => composeFile(recipe, { replicas: { chat: 0, embed: 0, gpu: 0 } }), (e: unknown) => e instanceof InputError && /no target with a server/.test(e.message));
  await writeFile(join(dir, 'recipes', 'clash.yaml'), FLEET.replace('port: 9000', 'port: 8082'));
  const clash = await loadRecipe('clash', dir);
  assert.throws(() => composeFile(clash), (e: unknown) => e instanceof InputError && /host port 8082 is taken twice: chat-3 and embed-1/.test(e.message) && e.field === 'targets.embed.deploy.port');
  await writeFile(join(dir, 'recipes', 'gpus.yaml'), FLEET.replace('deploy: { replicas: 2, restart: always, port: 9000 }', 'deploy: { gpus: 2 }'));
  await assert.rejects(loadRecipe('gpus', dir), (e: unknown) => e instanceof InputError && /does not run on a GPU/.test(e.message));
});

test('`bake compose` writes docker/<recipe>/docker-compose.yml (YAML a compose tool reads) and takes overrides', async () => {
  const r = await bake(['-C', dir, '--json', 'compose', 'fleet', '--replicas', 'chat=2', 'gpu=0']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { file: string; services: Record<string, unknown> };
  assert.equal(out.file, join(dir, 'docker', 'fleet', 'docker-compose.yml'));
  const written = parse(await readFile(out.file, 'utf8')) as { services: Record<string, { image: string }> };
  assert.deepEqual(Object.keys(written.services), ['chat-1', 'chat-2', 'embed-1', 'embed-2']);
  assert.deepEqual(written.services, out.services);
  const bad = await bake(['-C', dir, 'compose', 'fleet', '--replicas', 'chat']);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /expected <target>=<value>/);
});

test('a vLLM target\'s service carries the host settings vLLM needs: ipc=host, memlock and stack ulimits, its GPUs', async () => {
  const recipe = await loadRecipe(join(projectRoot, 'recipes', 'vllm-awq.yaml'), projectRoot);
  const file = composeFile(recipe, {});
  const services = Object.values(file.services) as { ipc?: string; ulimits?: Record<string, unknown>; deploy?: { resources: { reservations: { devices: { count: unknown }[] } } } }[];
  assert.ok(services.length > 0);
  for (const s of services) {
    assert.equal(s.ipc, 'host');
    assert.deepEqual(s.ulimits, { memlock: { soft: -1, hard: -1 }, stack: 67108864 });
    assert.ok(s.deploy!.resources.reservations.devices[0]!.count);
  }
});
