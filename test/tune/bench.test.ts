// bake bench without an engine: sweeps as checked setting points, the measurement against a server that
// speaks llama-server's streaming protocol with its `timings` (a stand-in on loopback, timed as it
// answers), the table and JSON, and --apply changing only the swept fields of the recipe. The same on a
// real llama-server image is in test/image/docker/llamacpp.test.ts.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadRecipe } from '../../src/recipe/load.js';
import { applySettingsText, bench, measure, parseSweep, percentile, sweepPoints, workload } from '../../src/tune/index.js';
import { InputError } from '../../src/util/errors.js';
import { bake, projectRoot } from '../support/cli.js';
import { FLEET_MODELS } from '../support/fleet.js';

/** A loopback server answering like llama-server: streamed chat chunks ending with `timings`, embeddings. */
function fakeLlamaServer(firstTokenMs: number): Promise<{ url: string; server: Server; requests: { path: string; body: Record<string, unknown> }[] }> {
  const requests: { path: string; body: Record<string, unknown> }[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
      requests.push({ path: req.url ?? '', body });
      if (req.url === '/health') return void res.writeHead(200).end('{"status":"ok"}');
      if (req.url === '/v1/embeddings') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: [{ index: 0, embedding: [0.6, 0.8] }] }));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      send({ choices: [{ delta: { role: 'assistant', content: null } }] });
      setTimeout(() => {
        for (let i = 0; i < Number(body.max_tokens); i++) send({ choices: [{ delta: { content: `t${i}` } }] });
        send({ choices: [{ delta: {}, finish_reason: 'length' }], timings: { prompt_n: 20, prompt_per_second: 400, predicted_n: body.max_tokens, predicted_per_second: 50 } });
        res.end('data: [DONE]\n\n');
      }, firstTokenMs);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, requests })));
}

const RECIPE = `# a comment that must survive
image: { name: acme/fleet, version: 1.0.0 }
${FLEET_MODELS}targets:
  chat:
    models: [chat]
    server:
      kind: llama-server
      # hand-tuned
      settings:
        ctx-size: 8192   # 8k context
        ubatch-size: 64
        flash-attn: on
  embed:
    models: [embed]
    server: { kind: llama-server, settings: { pooling: mean } }
`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-bench-'));
  await mkdir(join(dir, 'recipes'));
  await writeFile(join(dir, 'recipes', 'fleet.yaml'), RECIPE);
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

describe('sweeps', () => {
  test('every combination of the swept values, each checked against the server\'s flags', async () => {
    const recipe = await loadRecipe('fleet', dir);
    const chat = recipe.targets[0]!;
    const sweep = parseSweep(['ubatch-size=64,128,256', 'batch-size=128,256', 'flash-attn=on']);
    assert.deepEqual(sweep, { 'ubatch-size': [64, 128, 256], 'batch-size': [128, 256], 'flash-attn': ['on'] });
    const points = sweepPoints(chat.server, sweep);
    assert.equal(points.length, 6);
    assert.deepEqual(points[5], { 'ubatch-size': 256, 'batch-size': 256, 'flash-attn': 'on' });
    assert.throws(() => sweepPoints(chat.server, parseSweep(['ubatch-szie=64,128'])), (e: unknown) => e instanceof InputError && e.field === '--sweep ubatch-szie' && /did you mean --ubatch-size/.test(e.message));
    assert.throws(() => sweepPoints(chat.server, parseSweep(['cache-type-k=q8_0,q3'])), (e: unknown) => e instanceof InputError && /one of f32/.test(e.expected ?? ''));
    assert.throws(() => parseSweep(['ubatch-size']), (e: unknown) => e instanceof InputError && e.field === '--sweep');
    assert.throws(() => parseSweep(['ubatch-size=1', 'ubatch-size=2']), (e: unknown) => e instanceof InputError && /twice/.test(e.message));
  });
});

describe('measure', () => {
  let fake: Awaited<ReturnType<typeof fakeLlamaServer>>;
  before(async () => { fake = await fakeLlamaServer(40); });
  after(() => fake.server.close());

  test('chat: TTFT on the client clock from the stream, token rates from the server\'s timings; the fixed prompts in order', async () => {
    fake.requests.length = 0;
    const m = await measure(fake.url, workload('chat', { requests: 6, concurrency: 2, maxTokens: 5 }));
    assert.equal(m.requests, 6);
    assert.equal(m.errors, 0);
    assert.ok(m.ttft_p50_ms! >= 39 && m.ttft_p50_ms! < 1000, String(m.ttft_p50_ms));
    assert.ok(m.ttft_p95_ms! >= m.ttft_p50_ms!);
    assert.equal(m.gen_tps, 50);
    assert.equal(m.prompt_tps, 400);
    const chats = fake.requests.filter((r) => r.path === '/v1/chat/completions');
    assert.equal(chats.length, 7, 'one warm-up request, then the workload');
    assert.ok(chats.slice(1).every((r) => r.body.stream === true && r.body.ignore_eos === true && r.body.max_tokens === 5));
  });

  test('embeddings: inputs per second on the client clock', async () => {
    const m = await measure(fake.url, workload('embedding', { requests: 8, concurrency: 4 }));
    assert.equal(m.errors, 0);
    assert.ok(m.embeddings_per_s! > 0);
    assert.equal(m.ttft_p50_ms, undefined);
  });

  test('percentile interpolates between ranks', () => {
    assert.equal(percentile([10, 20, 30, 40], 0.5), 25);
    assert.equal(percentile([5], 0.95), 5);
  });

  test('bench on a URL: one point, the sources named, the best marked; a sweep needs bake to start the server', async () => {
    const recipe = await loadRecipe('fleet', dir);
    const r = await bench({ recipe, target: 'chat', url: fake.url, requests: 4, maxTokens: 3 });
    assert.equal(r.points.length, 1);
    assert.equal(r.points[0]!.best, true);
    assert.deepEqual(r.objective, { metric: 'ttft_p50_ms', better: 'min' });
    assert.match(r.sources.ttft_p50_ms!, /client clock/);
    assert.match(r.sources.gen_tps!, /llama-server timings/);
    const e = await bench({ recipe, target: 'embed', url: fake.url, requests: 4 });
    assert.deepEqual(e.objective, { metric: 'embeddings_per_s', better: 'max' });
    await assert.rejects(bench({ recipe, target: 'chat', url: fake.url, sweep: { 'ubatch-size': [64, 128] } }), (err: unknown) => err instanceof InputError && err.field === '--sweep');
    await assert.rejects(bench({ recipe, target: 'embed', url: fake.url, objective: 'ttft_p50_ms' }), (err: unknown) => err instanceof InputError && /not measured for an embedding server/.test(err.message));
    await assert.rejects(bench({ recipe, url: fake.url }), (err: unknown) => err instanceof InputError && /2 llama-server targets/.test(err.message));
  });

  test('`bake bench --url` prints the table and saves the JSON', async () => {
    const out = join(dir, 'result.json');
    const r = await bake(['-C', dir, 'bench', 'fleet', '--target', 'chat', '--url', fake.url, '--requests', '4', '--max-tokens', '3', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ttft p50 ms\s+ttft p95 ms\s+gen tok\/s\s+prompt tok\/s\s+rss MiB/);
    assert.match(r.stdout, /\* best ttft_p50_ms \(min\)/);
    assert.match(r.stdout, /gen_tps: llama-server timings/);
    const saved = JSON.parse(await readFile(out, 'utf8'));
    assert.equal(saved.points.length, 1);
    assert.equal(saved.target, 'chat');
    const noSweep = await bake(['-C', dir, 'bench', 'fleet', '--target', 'chat', '--url', fake.url, '--apply']);
    assert.equal(noSweep.code, 2);
    assert.match(noSweep.stderr, /--apply writes the best of a sweep/);
  });
});

describe('--apply', () => {
  test('only the swept fields change: comments, order and layout stay', () => {
    const after = applySettingsText(RECIPE, 'chat', { 'ubatch-size': 128, 'batch-size': 256 });
    // Exactly: ubatch-size's value replaced, batch-size added after the map's last line; nothing else moves.
    assert.equal(after, RECIPE.replace('        ubatch-size: 64\n        flash-attn: on\n', '        ubatch-size: 128\n        flash-attn: on\n        batch-size: 256\n'));
    // A flow mapping stays a flow mapping.
    const embed = applySettingsText(RECIPE, 'embed', { 'ubatch-size': 2048 });
    assert.match(embed, /server: \{ kind: llama-server, settings: \{ pooling: mean, ubatch-size: 2048 \} \}/);
    assert.throws(() => applySettingsText(RECIPE, 'gpu', { parallel: 2 }), (e: unknown) => e instanceof InputError);
    // No settings yet: a settings mapping is added to the server.
    const bare = RECIPE.replace('    server: { kind: llama-server, settings: { pooling: mean } }', '    server:\n      kind: llama-server');
    assert.equal(applySettingsText(bare, 'embed', { parallel: 2 }), `${bare.trimEnd()}\n      settings: { parallel: 2 }\n`);
  });

  test('the shipped recipe: applying its own values back changes nothing', async () => {
    const text = await readFile(join(projectRoot, 'recipes', 'chat-llamacpp.yaml'), 'utf8');
    assert.equal(applySettingsText(text, 'chat', { 'ubatch-size': 128, 'batch-size': 256 }), text);
  });
});
