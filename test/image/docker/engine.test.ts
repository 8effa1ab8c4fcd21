// Real builds on a real Docker engine (a private dockerd from test/support/docker-env.sh; no image can
// be pulled here, so the bases are local: debootstrap'ed Debian, the host's node, llama-server built
// from node-llama-cpp's llama.cpp source, a vLLM stand-in). Containers run with --network none.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRecipe } from '../../../src/recipe/load.js';
import type { Recipe } from '../../../src/recipe/types.js';
import { buildImage, buildRecipe, buildTarget, connectEngine, ensureBakeImage, inspectImage, packContext, pingEngine, pushImage, tagImage, type BuildEvent } from '../../../src/image/docker/index.js';
import { EngineError, InputError } from '../../../src/util/errors.js';
import { writeBuildFiles } from '../../../src/image/dockerfile/index.js';
import { sha256Bytes } from '../../../src/util/digest.js';
import { bakeCli, bakeCliOk, docker, dockerOk, makeTwoModelProject, runUntil, startDockerEnv, type DockerTestEnv } from '../../support/docker-env.js';
import { modelFilesInImage } from '../../support/image-files.js';

const BASES = {
  BASE_IMAGE_CPU: 'local/node:20-bookworm-slim',
  BASE_IMAGE_LLAMACPP: 'local/llama-server:bookworm',
  BASE_IMAGE_CUDA: 'local/vllm-openai:stand-in',
};
const NODE_IMAGE = 'local/node:20-bookworm-slim';

let env: DockerTestEnv;
let project: { dir: string; cleanup(): Promise<void> };
let recipe: Recipe;
const containers: string[] = [];
const built: Record<string, string> = {};

before(async () => {
  env = startDockerEnv();
  project = await makeTwoModelProject();
  recipe = await loadRecipe('two', project.dir);
  await writeBuildFiles({ root: project.dir, recipe });
  // The engine's BuildKit cache outlives runs (docker-env.sh keeps its data). Start this file's builds
  // cold, so what they assert about a first build (RUN output, then reuse) holds whatever ran before.
  await dockerOk(['builder', 'prune', '--all', '--force']);
  // The builder image is made once per run from the current sources; builds below use it as it is,
  // so a source change by someone else mid-run does not change the images between two tests.
  await ensureBakeImage({ docker: connectEngine(), nodeImage: NODE_IMAGE });
});

after(async () => {
  for (const id of containers) await docker(['rm', '-f', id]);
  await project?.cleanup();
  env?.stop();
});

function stepNames(events: BuildEvent[]): string[] {
  return [...new Set(events.flatMap((e) => (e.type === 'step' ? [e.step.name] : [])))];
}


test('no engine answering is a clear error that says how to start one', async () => {
  const nowhere = { DOCKER_HOST: 'unix:///tmp/bake-no-engine-here.sock' };
  await assert.rejects(pingEngine(connectEngine(nowhere), nowhere), (e: unknown) => {
    assert.ok(e instanceof EngineError, String(e));
    assert.match(e.message, /no Docker engine answers at unix:\/\/\/tmp\/bake-no-engine-here\.sock: the socket does not exist/);
    assert.match(e.hint ?? '', /systemctl start docker/);
    assert.match(e.hint ?? '', /DOCKER_HOST/);
    assert.equal(e.exit, 'engine');
    return true;
  });
  await assert.rejects(
    buildTarget({ recipe, target: 'cpu', contextDir: project.dir, dockerfile: 'docker/two/Dockerfile', tag: 'x:y', docker: connectEngine(nowhere) }),
    (e: unknown) => e instanceof EngineError && /no Docker engine answers/.test(e.message),
  );
});

test('an unknown target and a malformed BUNDLE_MODELS are input errors before anything is built', async () => {
  await assert.rejects(
    buildRecipe({ root: project.dir, recipe, targets: ['tpu' as never] }),
    (e: unknown) => e instanceof InputError && /has no target "tpu"/.test(e.message) && /cpu, llamacpp, cuda/.test(e.expected ?? ''),
  );
  await assert.rejects(
    buildTarget({ recipe, target: 'cpu', contextDir: project.dir, dockerfile: 'docker/two/Dockerfile', tag: 'x:y', buildArgs: { BUNDLE_MODELS: 'yes' } }),
    (e: unknown) => e instanceof InputError && e.field === 'BUNDLE_MODELS',
  );
});

test('bake build of the two-model recipe: every target built through the engine, with live progress', { timeout: 15 * 60_000 }, async () => {
  const events: Record<string, BuildEvent[]> = {};
  const result = await buildRecipe({
    root: project.dir,
    recipe,
    targets: ['cpu', 'llamacpp', 'cuda'],
    buildArgs: { ...BASES },
    nodeImage: NODE_IMAGE,
    ensureBuilder: false,
    onEvent: (target, e) => (events[target] ??= []).push(e),
  });
  assert.equal(result.dockerfile, join(project.dir, 'docker', 'two', 'Dockerfile'));
  assert.match(await readFile(result.bakeHcl, 'utf8'), /target "two-cpu"/);
  assert.deepEqual(result.images.map((i) => i.target), ['cpu', 'llamacpp', 'cuda']);
  for (const img of result.images) {
    built[img.target] = img.imageId;
    assert.match(img.imageId, /^sha256:[0-9a-f]{64}$/);
    assert.equal((await inspectImage(connectEngine(), img.tags[0]!))?.id, img.imageId, `${img.tags[0]} names the built image`);
  }
  assert.deepEqual(result.images[0]!.tags, ['bake.test/two:1.0.0-cpu', 'bake.test/two:1.0.0']);
  // Progress came from BuildKit's status stream: named steps, and the RUN's own output.
  const cpuSteps = stepNames(events.cpu!);
  assert.ok(cpuSteps.some((n) => /^\[model-vad \d+\/\d+\] RUN .*bake-materialize recipes\/two\.yaml vad/.test(n)), cpuSteps.join('\n'));
  assert.ok(cpuSteps.some((n) => /^\[model-encoder \d+\/\d+\] RUN /.test(n)));
  const cpuLogs = events.cpu!.flatMap((e) => (e.type === 'log' ? [e.text] : [])).join('');
  assert.match(cpuLogs, /encoder -> \/out\/app\/models\/encoder/);
  assert.ok(stepNames(events.llamacpp!).some((n) => /^\[model-stories \d+\/\d+\] RUN /.test(n)));
  // A target that carries the same models reuses the stages another one ran.
  assert.ok(events.cuda!.some((e) => e.type === 'step' && e.step.cached && /model-encoder/.test(e.step.name)));
});

test('`bake build two --target cpu` on the command line: Dockerfile written, image built, tagged and runnable', { timeout: 10 * 60_000 }, async () => {
  const engineEnv = { ...BASES, BAKE_NODE_IMAGE: NODE_IMAGE, DOCKER_HOST: env.env.DOCKER_HOST! };
  const r = await bakeCli(['-C', project.dir, 'build', 'two', '--target', 'cpu'], project.dir, engineEnv);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /wrote .*docker\/two\/Dockerfile/);
  const m = /cpu \(onnx\): (sha256:[0-9a-f]{64}) bake\.test\/two:1\.0\.0-cpu, bake\.test\/two:1\.0\.0, bake\.test\/two:models-([0-9a-f]{12})-cpu/.exec(r.stdout);
  assert.ok(m, r.stdout);
  const run = await runUntil(['--network', 'none', `bake.test/two:models-${m![2]}-cpu`], /serving 2 ONNX model/, 60_000);
  containers.push(run.id);
  assert.match(run.logs, /pre-quantized vad loaded in \d+ ms/);
  // Bad input on the command line: exit codes 2 (usage) and 6 (engine), with the fix in the message.
  const bad = await bakeCli(['-C', project.dir, 'build', 'two', '--target', 'tpu'], project.dir, engineEnv);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /tpu/);
  const down = await bakeCli(['-C', project.dir, 'build', 'two', '--target', 'cpu'], project.dir, { ...engineEnv, DOCKER_HOST: 'unix:///tmp/bake-no-engine-here.sock' });
  assert.equal(down.code, 6, down.stderr);
  assert.match(down.stderr, /no Docker engine answers at unix:\/\/\/tmp\/bake-no-engine-here\.sock/);
  assert.match(down.stderr, /systemctl start docker/);
});

test('the cpu image runs with --network none: models checked against their manifests, ONNX opened', { timeout: 5 * 60_000 }, async () => {
  const facts = (await inspectImage(connectEngine(), built.cpu!))!;
  assert.deepEqual(facts.entrypoint, ['node', '/opt/bake-runtime/app/bake-runtime.mjs', 'serve', '--']);
  assert.equal(facts.labels['dev.bake.bundled'], 'true');
  assert.equal(facts.labels['dev.bake.models'], 'vad,encoder');
  const run = await runUntil(['--network', 'none', built.cpu!], /serving 2 ONNX model/, 60_000);
  containers.push(run.id);
  assert.ok(!run.exited, run.logs);
  assert.match(run.logs, /pre-quantized vad loaded in \d+ ms/);
  assert.match(run.logs, /pre-quantized encoder loaded in \d+ ms/);
  assert.match(run.logs, /onnxruntime opened vad: \/app\/models\/vad\/silero_vad_16k_op15\.onnx \(inputs: input, state, sr; outputs: output, stateN\)/);
  // Each model its own layer at /app/models/<id>/ with a manifest.json.
  const files = await modelFilesInImage(built.cpu!);
  const paths = files.map((f) => f.path).sort();
  assert.deepEqual(paths.filter((p) => p.startsWith('app/models/vad/')), ['app/models/vad/README.md', 'app/models/vad/manifest.json', 'app/models/vad/silero_vad_16k_op15.onnx']);
  assert.ok(paths.includes('app/models/encoder/onnx/model_quantized.onnx') && !paths.includes('app/models/encoder/onnx/model.onnx'), 'the INT8 encoder ships, not its fp32 original');
  assert.ok(!paths.some((p) => p.startsWith('app/models/stories/')), 'the GGUF model belongs to the llamacpp target');
  const manifest = JSON.parse((await dockerOk(['run', '--rm', '--network', 'none', '--entrypoint', 'cat', built.cpu!, '/app/models/encoder/manifest.json'])));
  assert.equal(manifest.id, 'encoder');
  assert.equal(manifest.quantization.format, 'onnx-int8');
  assert.equal(manifest.source.type, 'path');
  assert.ok(manifest.verification, 'verification results (or the skip) are recorded');
  // A corrupted model file inside the container stops the start with an integrity error.
  const broken = await docker(['run', '--rm', '--network', 'none', '--user', '0', '--entrypoint', 'sh', built.cpu!, '-c',
    'cp /app/models/vad/README.md /tmp/r && echo tampered > /app/models/vad/README.md; node /opt/bake-runtime/app/bake-runtime.mjs check']);
  assert.equal(broken.code, 3, broken.stdout + broken.stderr);
  assert.match(broken.stderr, /integrity check failed for \/app\/models\/vad\/README\.md/);
});

test('the cpu image pushes to the loopback registry through the engine', { timeout: 5 * 60_000 }, async () => {
  const ref = `${env.registry}/bake-test/two:cpu`;
  await tagImage(connectEngine(), built.cpu!, ref);
  const { digest } = await pushImage(connectEngine(), ref);
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  const res = await fetch(`http://${env.registry}/v2/bake-test/two/manifests/cpu`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('docker-content-digest'), digest);
  const manifest = (await res.json()) as { layers: unknown[] };
  assert.equal(manifest.layers.length, (await inspectImage(connectEngine(), built.cpu!))!.layers.length);
  await assert.rejects(pushImage(connectEngine(), 'bake.test/two:1.0.0-cpu-not-there'), (e: unknown) => e instanceof EngineError && /could not push/.test(e.message));
});

test('the llamacpp image (llama-server built here) runs with --network none and loads the GGUF', { timeout: 5 * 60_000 }, async () => {
  const facts = (await inspectImage(connectEngine(), built.llamacpp!))!;
  assert.ok(facts.env.includes('BAKE_SERVER=llama-server'));
  assert.equal(facts.labels['dev.bake.models'], 'stories');
  const run = await runUntil(['--network', 'none', built.llamacpp!], /listening on http/, 90_000);
  containers.push(run.id);
  assert.ok(!run.exited, run.logs);
  assert.match(run.logs, /pre-quantized stories loaded in \d+ ms/);
  assert.match(run.logs, /starting \/app\/llama-server -m \/app\/models\/stories\/stories-Q8_0\.gguf --alias stories/);
  assert.match(run.logs, /load_model: loading model '\/app\/models\/stories\/stories-Q8_0\.gguf'/);
  assert.match(run.logs, /llama_server: model loaded/);
  assert.doesNotMatch(run.logs, /vad/, 'the ONNX model is not part of the llamacpp target');
});

test('the cuda image is built on a stand-in base and inspected (no GPU here: not run)', async () => {
  const facts = (await inspectImage(connectEngine(), built.cuda!))!;
  const base = (await inspectImage(connectEngine(), BASES.BASE_IMAGE_CUDA))!;
  assert.deepEqual(facts.layers.slice(0, base.layers.length), base.layers, 'built on the given base');
  assert.equal(facts.layers.length, base.layers.length + 5, 'runtime app, onnxruntime, node, and one layer per model');
  assert.deepEqual(facts.entrypoint, ['/opt/bake-runtime/bin/node', '/opt/bake-runtime/app/bake-runtime.mjs', 'serve', '--']);
  assert.ok(facts.env.includes('BAKE_SERVER=onnx') && facts.env.includes('BAKE_DEVICE=cuda'));
  assert.ok(facts.env.includes('NVIDIA_VISIBLE_DEVICES=all'), 'the base image config is kept');
  assert.equal(facts.labels['dev.bake.target'], 'cuda');
  const paths = (await modelFilesInImage(built.cuda!)).map((f) => f.path).sort();
  assert.ok(paths.includes('app/models/vad/silero_vad_16k_op15.onnx') && paths.includes('app/models/encoder/onnx/model_quantized.onnx'));
  // No Hub token, ARG or secret in the image's config or history.
  const history = facts.history.map((h) => h.createdBy).join('\n');
  assert.doesNotMatch(history + JSON.stringify(facts.env), /hf_token|HF_TOKEN/);
});

test('a missing base image is an engine error naming the image and the build ARG to change', { timeout: 5 * 60_000 }, async () => {
  await assert.rejects(
    buildTarget({ recipe, target: 'cpu', contextDir: project.dir, dockerfile: 'docker/two/Dockerfile', tag: 'bake.test/two:nope', buildArgs: { ...BASES, BASE_IMAGE_CPU: 'local/no-such-base:1' }, nodeImage: NODE_IMAGE, ensureBuilder: false }),
    (e: unknown) => {
      assert.ok(e instanceof EngineError, String(e));
      assert.match(e.message, /base image local\/no-such-base:1 for target cpu is not in the engine's image store and could not be pulled/);
      assert.equal(e.field, 'BASE_IMAGE_CPU');
      assert.match(e.hint ?? '', /--build-arg BASE_IMAGE_CPU=<image>/);
      return true;
    },
  );
});

// BUNDLE_MODELS=false (model layers pulled from the registry at start, or quantized at start): test/image/docker/rag.test.ts.

test('changing one model rebuilds only that model\'s layer; the other keeps its digest', { timeout: 10 * 60_000 }, async () => {
  const v1 = await buildTarget({ recipe, target: 'cpu', contextDir: project.dir, dockerfile: 'docker/two/Dockerfile', tag: 'bake.test/two:cpu-v1', buildArgs: BASES, nodeImage: NODE_IMAGE, ensureBuilder: false });
  const before = (await inspectImage(connectEngine(), v1.imageId))!;
  await writeFile(join(project.dir, 'models', 'vad', 'README.md'), 'silero VAD 16 kHz, opset 15 (MIT), second edition\n');
  await bakeCliOk(['-C', project.dir, 'lock', 'two', '--update', 'vad'], project.dir);
  const events: BuildEvent[] = [];
  const { imageId } = await buildTarget({ recipe, target: 'cpu', contextDir: project.dir, dockerfile: 'docker/two/Dockerfile', tag: 'bake.test/two:cpu-v2', buildArgs: BASES, nodeImage: NODE_IMAGE, ensureBuilder: false, onEvent: (e) => events.push(e) });
  const afterFacts = (await inspectImage(connectEngine(), imageId))!;
  assert.notEqual(imageId, v1.imageId);
  assert.equal(afterFacts.layers.length, before.layers.length);
  const n = before.layers.length;
  assert.deepEqual(afterFacts.layers.slice(0, n - 2), before.layers.slice(0, n - 2), 'base and runtime layers unchanged');
  assert.notEqual(afterFacts.layers[n - 2], before.layers[n - 2], 'the vad layer changed');
  assert.equal(afterFacts.layers[n - 1], before.layers[n - 1], 'the encoder layer (after vad\'s) kept its digest');
  const runtimeSteps = events.filter((e) => e.type === 'step' && e.step.completed && /^\[cpu-runtime \d+\/\d+\] COPY /.test(e.step.name));
  assert.ok(runtimeSteps.length > 0 && runtimeSteps.every((e) => e.type === 'step' && e.step.cached), 'runtime stage from cache');
});

test('plain docker build of each target works with the engine\'s own CLI; the Hub token goes in only as a secret', { timeout: 10 * 60_000 }, async (t) => {
  const tokenFile = join(project.dir, '.hf_token');
  await writeFile(tokenFile, 'hf_plainDockerBuildToken01\n');
  t.after(() => rm(tokenFile, { force: true }));
  for (const target of ['cpu', 'llamacpp', 'cuda']) {
    const tag = `bake.test/two:plain-${target}`;
    const args = ['build', '-f', 'docker/two/Dockerfile', '--target', target, '--network', 'none', '-t', tag, '--secret', `id=hf_token,src=${tokenFile}`];
    for (const [k, v] of Object.entries(BASES)) args.push('--build-arg', `${k}=${v}`);
    const r = await docker([...args, '.'], { cwd: project.dir, timeoutMs: 8 * 60_000 });
    assert.equal(r.code, 0, `docker build --target ${target}:\n${r.stderr}`);
    const facts = (await inspectImage(connectEngine(), tag))!;
    assert.equal(facts.labels['dev.bake.target'], target);
    const config = JSON.stringify(facts) + (await dockerOk(['history', '--no-trunc', tag]));
    assert.doesNotMatch(config, /hf_plainDockerBuildToken01/);
  }
});

test('BuildKit secrets through the API session reach RUN steps and never the image', { timeout: 5 * 60_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-secret-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'Dockerfile'), [
    'ARG BASE=local/debian:bookworm-slim',
    'FROM ${BASE}',
    'RUN --mount=type=secret,id=hf_token echo "token sha256: $(sha256sum /run/secrets/hf_token | cut -c1-64)" && echo "absent: $(test -e /run/secrets/other && echo no || echo yes)"',
    'RUN --mount=type=secret,id=other echo "optional secret missing: $(test -e /run/secrets/other && echo present || echo skipped)"',
    '',
  ].join('\n'));
  const token = 'hf_apiSessionSecretToken42';
  const logs: string[] = [];
  const { imageId } = await buildImage(connectEngine(), {
    context: packContext({ root: dir, include: ['Dockerfile'] }),
    dockerfile: 'Dockerfile', tags: ['bake.test/secret:1'], noCache: true,
    secrets: { hf_token: Buffer.from(token) },
    onEvent: (e) => { if (e.type === 'log') logs.push(e.text); },
  });
  const text = logs.join('');
  assert.match(text, new RegExp(`token sha256: ${sha256Bytes(token)}`));
  assert.match(text, /optional secret missing: skipped/);
  const facts = (await inspectImage(connectEngine(), imageId))!;
  assert.doesNotMatch(JSON.stringify(facts), new RegExp(token));
  const files = await dockerOk(['run', '--rm', '--network', 'none', imageId, 'sh', '-c', 'ls -A /run/secrets 2>/dev/null | wc -l']);
  assert.equal(files.trim(), '0');
});

/** What a running container's server answers, asked from inside it (the container has no network). */
async function askInside(id: string, path: string, body?: unknown): Promise<string> {
  const js = `fetch('http://127.0.0.1:8080${path}'${body === undefined ? '' : `, { method: 'POST', headers: { 'content-type': 'application/json' }, body: ${JSON.stringify(JSON.stringify(body))} }`}).then(async (r) => console.log(r.status + ' ' + await r.text()))`;
  return (await dockerOk(['exec', id, 'node', '-e', js])).trim();
}

async function waitHealthy(id: string, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const status = (await dockerOk(['inspect', '-f', '{{.State.Health.Status}}', id])).trim();
    if (status === 'healthy') return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`container ${id} is ${status} after ${timeoutMs} ms:\n${(await docker(['logs', id])).stderr}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test('the daemonless image is the runnable image: loaded into the engine, it starts with --network none, turns healthy and answers like the engine-built one', { timeout: 10 * 60_000 }, async (t) => {
  // The daemonless writer reads its base from a registry: the engine's local node base, pushed to the loopback one.
  const base = `${env.registry}/bake-test/node:20-bookworm-slim`;
  await dockerOk(['tag', BASES.BASE_IMAGE_CPU, base]);
  await dockerOk(['push', base]);
  const tmp = await mkdtemp(join(tmpdir(), 'bake-runnable-'));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  const r = await bakeCli(['-C', project.dir, '--json', 'build', 'two', '--target', 'cpu', '--base', base, '--output', `docker-archive:${join(tmp, 'cpu.tar')}`], project.dir, { BAKE_STORE: join(tmp, 'store'), SOURCE_DATE_EPOCH: '0' });
  assert.equal(r.code, 0, r.stderr);
  const image = JSON.parse(r.stdout).images[0];
  // The base's layers first (the image's whole layer list), then bake's.
  assert.deepEqual(image.layers.map((l: { what: string }) => l.what).filter((w: string) => w !== 'base'), ['runtime', 'model vad', 'model encoder']);
  assert.ok(image.layers[0].what === 'base', 'the node base has layers');
  const loaded = await dockerOk(['load', '-i', join(tmp, 'cpu.tar')]);
  assert.match(loaded, /Loaded image: bake\.test\/two:1\.0\.0-cpu/);
  const daemonless = (await inspectImage(connectEngine(), 'bake.test/two:1.0.0-cpu'))!;
  const engine = (await inspectImage(connectEngine(), built.cpu!))!;
  // One runtime contract: the same entrypoint, command, environment, port and health check.
  for (const k of ['entrypoint', 'cmd', 'exposedPorts', 'healthcheck'] as const) assert.deepEqual(daemonless[k], engine[k], k);
  const bakeEnv = (f: typeof engine) => f.env.filter((e) => e.startsWith('BAKE_')).sort();
  assert.deepEqual(bakeEnv(daemonless), bakeEnv(engine));
  assert.deepEqual(daemonless.healthcheck?.test, ['CMD', 'node', '/opt/bake-runtime/app/bake-runtime.mjs', 'health']);
  assert.deepEqual(daemonless.exposedPorts, ['8080/tcp']);

  const ids: string[] = [];
  for (const ref of [daemonless.id, engine.id]) {
    const id = (await dockerOk(['run', '-d', '--network', 'none', '--health-interval', '1s', ref])).trim();
    containers.push(id);
    ids.push(id);
  }
  for (const id of ids) await waitHealthy(id);
  const answers = await Promise.all(ids.map((id) => askInside(id, '/health')));
  assert.match(answers[0]!, /^200 /);
  assert.equal(answers[0], answers[1], 'both images answer the same');
});
