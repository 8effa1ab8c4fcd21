// The llama.cpp fleet on a real engine with the llama-server built here: recipes/chat-llamacpp.yaml (its
// generated stand-ins served by the loopback Hub under their real repo names, plus a BERT embedding
// target) is locked, pulled, converted, quantized and verified, baked daemonless onto the llama-server
// base, and run with --network none: a chat completion and embeddings through the official `openai`
// client (run in a container sharing the server's network namespace: the server has no other network),
// embeddings equal to onnxruntime's on the ONNX export of the same weights, the compose file starting one
// chat and one embedding replica that report healthy, and `bake bench` with a two-point sweep and --apply.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse, stringify } from 'yaml';
import * as ort from 'onnxruntime-node';
import { loadTokenizer } from '../../../src/model/onnx/index.js';
import { cosine } from '../../../src/verify/onnx/metrics.js';
import { bakeCli, docker, dockerOk, startDockerEnv, type DockerTestEnv } from '../../support/docker-env.js';
import { BGE_REPO, fleetHubRepos, NOMIC_REPO } from '../../support/fleet-models.js';
import { startHubServer, type HubServer } from '../../support/hub-server.js';
import { freePort } from '../../support/registry.js';
import { requireHostTools } from '../../support/host-tools.js';
import { REPO_ROOT } from '../../support/docker-env.js';

const NODE_IMAGE = 'local/node:20-bookworm-slim';
const IMAGE = 'registry.example.com/ml/chat-fleet';
const TARGETS = ['chat', 'chat-q6', 'embed', 'embed-bge'];
const TEXTS = ['How do I reset my password if I no longer have access to my email?', 'The meeting has been moved to Thursday at 3 pm in room 204.', 'Bees communicate the location of flowers with a waggle dance.'];

let env: DockerTestEnv;
let hub: HubServer;
let dir: string;
let base: string;
let bakeEnv: Record<string, string>;
const containers: string[] = [];
const ports: Record<string, number> = {};

/** The shipped recipe with a BERT embedding target added (and free host ports for the fleet). */
async function projectRecipe(): Promise<string> {
  const text = await readFile(join(REPO_ROOT, 'recipes', 'chat-llamacpp.yaml'), 'utf8');
  for (const t of ['chat', 'chat-q6', 'embed']) ports[t] = await freePort();
  let out = text.replace('port: 8080 }', `port: ${ports.chat} }`).replace('port: 8090 }', `port: ${ports['chat-q6']} }`).replace('port: 8100 }', `port: ${ports.embed} }`);
  out = out.replace('\ntargets:\n', `
  - id: bge
    repo: ${BGE_REPO}
    files: ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "modules.json", "1_Pooling/config.json", "onnx/model.onnx"]
    task: feature-extraction
    quantize: { format: gguf, type: Q8_0 }
    targets: [embed-bge]
targets:
  embed-bge:
    models: [bge]
    server: { kind: llama-server, settings: { ubatch-size: 512, batch-size: 512 } }
    deploy: { replicas: 0 }
`);
  return out;
}

before(async () => {
  requireHostTools('docker-compose');
  env = startDockerEnv();
  dir = await mkdtemp(join(tmpdir(), 'bake-llamacpp-'));
  await mkdir(join(dir, 'recipes'));
  await writeFile(join(dir, 'recipes', 'chat-llamacpp.yaml'), await projectRecipe());
  await cp(join(REPO_ROOT, 'models.lock'), join(dir, 'models.lock'));
  hub = await startHubServer({ repos: await fleetHubRepos(join(dir, 'hub-models')) });
  bakeEnv = { HF_ENDPOINT: hub.url, HF_HOME: join(dir, 'hf'), BAKE_STORE: join(dir, 'store'), HF_TOKEN_PATH: '/nonexistent', SOURCE_DATE_EPOCH: '1700000000', DOCKER_HOST: env.env.DOCKER_HOST! };
  // The daemonless build reads its base from a registry: the llama-server built here, pushed to the test registry.
  base = `${env.registry}/bake-test/llama-server:bookworm`;
  await dockerOk(['tag', 'local/llama-server:bookworm', base]);
  await dockerOk(['push', base]);
});

after(async () => {
  for (const id of containers) await docker(['rm', '-f', id]);
  await hub?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  env?.stop();
});

const bake = (args: string[]) => bakeCli(['-C', dir, ...args], dir, bakeEnv);

test('lock (the shipped entries as they are, the added BERT resolved), pull, convert, quantize and verify every model', { timeout: 20 * 60_000 }, async () => {
  const lock = await bake(['lock', 'chat-llamacpp']);
  assert.equal(lock.code, 0, lock.stderr);
  assert.match(lock.stdout, /unchanged chat-llamacpp\/chat /);
  assert.match(lock.stdout, /added\s+chat-llamacpp\/bge /);
  const pull = await bake(['pull', 'chat-llamacpp']);
  assert.equal(pull.code, 0, pull.stderr);
  const verify = await bake(['--json', 'verify', 'chat-llamacpp']);
  assert.equal(verify.code, 0, verify.stderr);
  const result = JSON.parse(verify.stdout) as { models: { id: string; steps: { step: string }[]; report: { metrics: Record<string, number>; passed: boolean } }[] };
  const byId = Object.fromEntries(result.models.map((m) => [m.id, m]));
  for (const id of ['chat', 'chat-q6', 'embed', 'bge']) {
    assert.deepEqual(byId[id]!.steps.map((s) => s.step), ['fetch', 'convert', 'quantize', 'verify'], id);
    assert.equal(byId[id]!.report.passed, true, id);
  }
  assert.ok(byId.chat!.report.metrics.kld_mean! <= 0.05);
  assert.ok(byId['chat-q6']!.report.metrics.kld_mean! < byId.chat!.report.metrics.kld_mean!, 'Q6_K is closer to F16 than Q4_K_M');
  for (const id of ['embed', 'bge']) {
    // llama.cpp's embedding of the converted F16 file is onnxruntime's on the same weights; Q8_0 close to it.
    assert.ok(byId[id]!.report.metrics.onnx_cosine_min! >= 0.999, `${id} ${byId[id]!.report.metrics.onnx_cosine_min}`);
    assert.ok(byId[id]!.report.metrics.cosine_min! >= 0.999, `${id} ${byId[id]!.report.metrics.cosine_min}`);
    assert.equal(byId[id]!.report.metrics.token_agreement, 1);
  }
});

test('a flag the server does not know is a recipe error (exit 2) before anything is built', { timeout: 120_000 }, async () => {
  const bad = join(dir, 'recipes', 'typo.yaml');
  await writeFile(bad, (await readFile(join(dir, 'recipes', 'chat-llamacpp.yaml'), 'utf8')).replace('ubatch-size: 128', 'ubatch-szie: 128'));
  const r = await bake(['build', 'typo', '--target', 'chat', '--output', `docker-archive:${join(dir, 'typo.tar')}`, '--base', base]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /typo\.yaml:\d+:\d+: llama-server has no flag --ubatch-szie \(did you mean --ubatch-size\?\)/);
  await assert.rejects(readFile(join(dir, 'typo.tar')), 'nothing written');
  await rm(bad);
});

test('every target baked daemonless onto the llama-server base and loaded: settings in the CMD, HEALTHCHECK on /health', { timeout: 15 * 60_000 }, async () => {
  for (const t of TARGETS) {
    const r = await bake(['build', 'chat-llamacpp', '--target', t, '--output', `docker-archive:${join(dir, `${t}.tar`)}`, '--base', base]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(await dockerOk(['load', '-i', join(dir, `${t}.tar`)]), new RegExp(`Loaded image: ${IMAGE}:1\\.0\\.0-${t}`));
  }
  const [inspect] = JSON.parse(await dockerOk(['image', 'inspect', `${IMAGE}:1.0.0-chat`])) as { Config: { Cmd: string[]; Healthcheck: { Test: string[] }; Labels: Record<string, string> } }[];
  assert.deepEqual(inspect!.Config.Cmd, ['--ctx-size', '8192', '--batch-size', '256', '--ubatch-size', '128', '--cache-type-k', 'q8_0', '--cache-type-v', 'q8_0', '--flash-attn', 'on', '--parallel', '4', '--cont-batching', '--cache-reuse', '256', '--load-mode', 'mmap+mlock']);
  assert.deepEqual(inspect!.Config.Healthcheck.Test.slice(-1), ['health']);
  assert.equal(inspect!.Config.Labels['dev.bake.models'], 'chat');
  const [embed] = JSON.parse(await dockerOk(['image', 'inspect', `${IMAGE}:1.0.0-embed`])) as { Config: { Cmd: string[] } }[];
  assert.ok(embed!.Config.Cmd.includes('--embedding') && embed!.Config.Cmd.includes('--pooling'));
});

/** Runs `image` with --network none until its health check passes. */
async function runHealthy(image: string): Promise<string> {
  const id = (await dockerOk(['run', '-d', '--network', 'none', image])).trim();
  containers.push(id);
  for (let i = 0; i < 240; i++) {
    const state = (await dockerOk(['inspect', '-f', '{{.State.Running}} {{.State.Health.Status}}', id])).trim();
    if (state === 'true healthy') return id;
    if (!state.startsWith('true')) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${image} did not become healthy:\n${(await docker(['logs', id])).stderr.slice(-3000)}`);
}

/** Runs `script` (CommonJS, with the project's `openai` package) in a container sharing `id`'s network namespace. */
async function openaiClient(id: string, script: string): Promise<unknown> {
  const out = await dockerOk(['run', '--rm', '--network', `container:${id}`, '-v', `${join(REPO_ROOT, 'node_modules')}:/nm:ro`, NODE_IMAGE, 'node', '-e',
    `const OpenAI = require('/nm/openai').default; const client = new OpenAI({ baseURL: 'http://127.0.0.1:8080/v1', apiKey: 'none' });\n(async () => { ${script} })().then((v) => process.stdout.write(JSON.stringify(v)), (e) => { console.error(e); process.exit(1); });`]);
  return JSON.parse(out);
}

test('the chat images run with --network none: a chat completion through the openai client, the ChatML template applied', { timeout: 10 * 60_000 }, async () => {
  for (const t of ['chat', 'chat-q6']) {
    const id = await runHealthy(`${IMAGE}:1.0.0-${t}`);
    const logs = (await docker(['logs', id])).stdout;
    assert.match(logs, new RegExp(`starting /app/llama-server -m /app/models/${t}/${t}-Q${t === 'chat' ? '4_K_M' : '6_K'}\\.gguf --alias ${t} .*--ubatch-size 128 --cache-type-k q8_0`));
    const r = (await openaiClient(id, `return client.chat.completions.create({ model: '${t}', messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name a colour.' }], max_tokens: 8, temperature: 0 });`)) as { model: string; choices: { message: { role: string; content: string }; finish_reason: string }[]; usage: { prompt_tokens: number; completion_tokens: number } };
    assert.equal(r.choices[0]!.message.role, 'assistant');
    assert.equal(typeof r.choices[0]!.message.content, 'string');
    assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
    // "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n..." : the template's tokens count.
    assert.ok(r.usage.prompt_tokens > 'You are terse.Name a colour.'.length, `prompt_tokens ${r.usage.prompt_tokens}`);
    await docker(['rm', '-f', id]);
  }
});

/** onnxruntime's pooled embedding of each text on the stand-in's ONNX export (the same weights). */
async function onnxEmbeddings(repo: string, pooling: 'mean' | 'cls'): Promise<number[][]> {
  const src = join(dir, 'hub-models', repo);
  const session = await ort.InferenceSession.create(join(src, 'onnx', 'model.onnx'));
  const tok = (await loadTokenizer(src)) as unknown as (t: string) => { input_ids: { data: ArrayLike<bigint> } };
  const out: number[][] = [];
  for (const t of TEXTS) {
    const ids = BigInt64Array.from(Array.from(tok(t).input_ids.data, BigInt));
    const n = ids.length;
    const r = await session.run({ input_ids: new ort.Tensor('int64', ids, [1, n]), attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]), token_type_ids: new ort.Tensor('int64', new BigInt64Array(n), [1, n]) });
    const h = r.last_hidden_state!.data as Float32Array;
    const dim = r.last_hidden_state!.dims[2]!;
    const v = new Array<number>(dim).fill(0);
    for (let i = 0; i < (pooling === 'cls' ? 1 : n); i++) for (let j = 0; j < dim; j++) v[j]! += h[i * dim + j]! / (pooling === 'cls' ? 1 : n);
    out.push(v);
  }
  return out;
}

test('the embedding images (nomic-bert and BERT, Q8_0) answer /v1/embeddings through the openai client as onnxruntime does', { timeout: 10 * 60_000 }, async () => {
  for (const [t, repo, pooling] of [['embed', NOMIC_REPO, 'mean'], ['embed-bge', BGE_REPO, 'cls']] as const) {
    const id = await runHealthy(`${IMAGE}:1.0.0-${t}`);
    const r = (await openaiClient(id, `return client.embeddings.create({ model: '${t}', input: ${JSON.stringify(TEXTS)} });`)) as { data: { index: number; embedding: number[] }[] };
    const served = r.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
    const ref = await onnxEmbeddings(repo, pooling);
    assert.equal(served.length, TEXTS.length);
    assert.equal(served[0]!.length, ref[0]!.length);
    for (let i = 0; i < TEXTS.length; i++) {
      const c = cosine(served[i]!, ref[i]!);
      assert.ok(c >= 0.999, `${t} text ${i}: cosine ${c}`);
    }
    await docker(['rm', '-f', id]);
  }
});

test('the compose file starts one chat and one embedding replica that report healthy', { timeout: 10 * 60_000 }, async () => {
  const file = join(dir, 'fleet.yml');
  const r = await bake(['compose', 'chat-llamacpp', '--out', file, '--replicas', 'chat=1', 'chat-q6=0', 'embed=1', 'embed-bge=0']);
  assert.equal(r.code, 0, r.stderr);
  const spec = parse(await readFile(file, 'utf8')) as { services: Record<string, { ulimits?: unknown }> };
  assert.deepEqual(Object.keys(spec.services), ['chat-1', 'embed-1']);
  // This machine's engine cannot raise RLIMIT_MEMLOCK (no CAP_SYS_RESOURCE): the mlock ulimit bake writes
  // for real hosts is taken out here; the model is small enough to lock within the default limit.
  assert.ok(spec.services['chat-1']!.ulimits);
  delete spec.services['chat-1']!.ulimits;
  await writeFile(file, stringify(spec, { version: '1.1' }));
  const project = `bakei12${process.pid}`;
  const compose = (args: string[]) => new Promise<{ code: number; out: string }>((resolve) => {
    import('node:child_process').then(({ execFile }) => execFile('docker-compose', ['-p', project, '-f', file, ...args], { env: { ...process.env, DOCKER_HOST: env.env.DOCKER_HOST! }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })));
  });
  try {
    const up = await compose(['up', '-d']);
    assert.equal(up.code, 0, up.out);
    let states: string[] = [];
    for (let i = 0; i < 240; i++) {
      const ids = (await dockerOk(['ps', '-q', '--filter', `label=com.docker.compose.project=${project}`])).trim().split('\n').filter(Boolean);
      states = await Promise.all(ids.map(async (id) => (await dockerOk(['inspect', '-f', '{{index .Config.Labels "com.docker.compose.service"}}={{.State.Health.Status}}', id])).trim()));
      if (states.length === 2 && states.every((s) => s.endsWith('=healthy'))) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    assert.deepEqual(states.sort(), ['chat-1=healthy', 'embed-1=healthy']);
    // Published on the recipe's host ports: the fleet answers there.
    const health = await fetch(`http://127.0.0.1:${ports.embed}/health`).then((x) => x.status, () => 0);
    assert.equal(health, 200);
  } finally {
    await compose(['down', '--timeout', '2']);
  }
});

test('bake bench: a two-point sweep on the chat image prints and saves the table; --apply changes only that field', { timeout: 15 * 60_000 }, async () => {
  const recipeFile = join(dir, 'recipes', 'chat-llamacpp.yaml');
  const before = await readFile(recipeFile, 'utf8');
  const out = join(dir, 'bench-chat.json');
  const r = await bake(['bench', 'chat-llamacpp', '--target', 'chat', '--sweep', 'ubatch-size=64,256', '--requests', '6', '--max-tokens', '8', '--out', out, '--apply']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /ubatch-size\s+ttft p50 ms\s+ttft p95 ms\s+gen tok\/s\s+prompt tok\/s\s+rss MiB/);
  assert.match(r.stdout, /^64 /m);
  assert.match(r.stdout, /^256 /m);
  assert.match(r.stdout, /\* best ttft_p50_ms \(min\)/);
  const saved = JSON.parse(await readFile(out, 'utf8')) as { points: { settings: Record<string, number>; args: string[]; best: boolean; metrics: { rss_bytes?: number; ttft_p50_ms: number; gen_tps: number; errors: number } }[] };
  assert.equal(saved.points.length, 2);
  for (const p of saved.points) {
    assert.ok(p.metrics.ttft_p50_ms > 0 && p.metrics.gen_tps > 0 && p.metrics.rss_bytes! > 1 << 20, JSON.stringify(p.metrics));
    assert.ok(p.args.join(' ').includes(`--ubatch-size ${p.settings['ubatch-size']}`));
  }
  const best = saved.points.find((p) => p.best)!;
  const after = await readFile(recipeFile, 'utf8');
  assert.equal(after, before.replace('        ubatch-size: 128\n        cache-type-k: q8_0\n        cache-type-v: q8_0\n        flash-attn: on\n        parallel: 4\n        cont-batching: true',
    `        ubatch-size: ${best.settings['ubatch-size']}\n        cache-type-k: q8_0\n        cache-type-v: q8_0\n        flash-attn: on\n        parallel: 4\n        cont-batching: true`), 'only the chat target\'s ubatch-size changed');
  process.stdout.write(`# bench (stand-in chat, CPU, this machine):\n${r.stdout.split('\n').map((l) => `#   ${l}`).join('\n')}\n`);
});
