// recipes/chat-llamacpp.yaml is shipped locked: its generated stand-ins, served under their real repo
// names by the loopback Hub, resolve to exactly what models.lock pins (`bake lock --check`), and the
// recipe's servers, settings and fleet read as intended. The full bake (verify, build, run) is
// test/image/docker/llamacpp.test.ts.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { composeFile } from '../../src/image/compose/index.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { runtimeImage } from '../../src/runtime/contract.js';
import { bake, projectRoot } from '../support/cli.js';
import { fleetHubRepos, NOMIC_REPO } from '../support/fleet-models.js';
import { startHubServer, type HubServer } from '../support/hub-server.js';

let dir: string;
let hub: HubServer;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-fleet-recipe-'));
  hub = await startHubServer({ repos: await fleetHubRepos(join(dir, 'models')) });
});
after(async () => {
  await hub?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('bake lock chat-llamacpp --check, every model resolved again: the generated stand-ins are what models.lock pins', { timeout: 300_000 }, async () => {
  const env = { HF_ENDPOINT: hub.url, HF_HOME: join(dir, 'hf'), BAKE_STORE: join(dir, 'store'), HF_TOKEN_PATH: '/nonexistent' };
  // --update resolves each model on the Hub again (commit, every file's size and sha256); --check writes nothing.
  const r = await bake(['-C', projectRoot, 'lock', 'chat-llamacpp', '--check', '--update', 'chat', 'chat-q6', 'embed'], { env });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const lock = JSON.parse(await readFile(join(projectRoot, 'models.lock'), 'utf8')) as { models: Record<string, { commit: string }> };
  assert.match(r.stdout, new RegExp(`chat-llamacpp/chat ${lock.models['chat-llamacpp/chat']!.commit.slice(0, 12)}`));
  assert.match(r.stdout, new RegExp(`chat-llamacpp/embed ${lock.models['chat-llamacpp/embed']!.commit.slice(0, 12)}`));
  // The check is real: other bytes under the same name make the lock stale (exit 2).
  const repos = await fleetHubRepos(join(dir, 'models'));
  await hub.push(NOMIC_REPO, { files: { ...repos[NOMIC_REPO]!.files, 'vocab.txt': 'changed\n' } });
  const stale = await bake(['-C', projectRoot, 'lock', 'chat-llamacpp', '--check', '--update', 'embed'], { env });
  assert.equal(stale.code, 2, stale.stderr);
  assert.match(stale.stderr, /models\.lock/);
});

test('the recipe: Q4_K_M and Q6_K chat targets and a Q8_0 embedding target, each a llama-server with its settings and HEALTHCHECK on /health', async () => {
  const recipe = await loadRecipe('chat-llamacpp', projectRoot);
  assert.deepEqual(recipe.targets.map((t) => [t.name, t.server.kind, t.models.join(',')]), [['chat', 'llama-server', 'chat'], ['chat-q6', 'llama-server', 'chat-q6'], ['embed', 'llama-server', 'embed']]);
  assert.deepEqual(recipe.models.map((m) => [m.id, m.quantize.format === 'gguf' ? m.quantize.type : '']), [['chat', 'Q4_K_M'], ['chat-q6', 'Q6_K'], ['embed', 'Q8_0']]);
  for (const t of recipe.targets) {
    const img = runtimeImage(t)!;
    assert.deepEqual(img.healthcheck?.test.slice(-1), ['health']);
    assert.equal(t.server.health?.path, '/health');
  }
  const chat = runtimeImage(recipe.targets[0]!)!;
  assert.deepEqual(chat.cmd, ['--ctx-size', '8192', '--batch-size', '256', '--ubatch-size', '128', '--cache-type-k', 'q8_0', '--cache-type-v', 'q8_0', '--flash-attn', 'on', '--parallel', '4', '--cont-batching', '--cache-reuse', '256', '--load-mode', 'mmap+mlock']);
  assert.ok(runtimeImage(recipe.targets[2]!)!.cmd.includes('--embedding'));
  const fleet = composeFile(recipe);
  assert.deepEqual(Object.keys(fleet.services), ['chat-1', 'chat-2', 'chat-q6-1', 'embed-1', 'embed-2']);
  assert.deepEqual(fleet.services['chat-1']!.ulimits, { memlock: { soft: -1, hard: -1 } }, 'mlock needs the memlock limit lifted');
  assert.equal(fleet.services['embed-1']!.ulimits, undefined);
});
