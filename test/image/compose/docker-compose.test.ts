// Debian's docker-compose (1.29, scripts/host-tools.sh) reads the compose files bake writes:
// `docker-compose config` validates them against the Compose Specification and prints them resolved.
// Starting a fleet on the engine is in test/image/docker/llamacpp.test.ts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { writeCompose } from '../../../src/image/compose/index.js';
import { loadRecipe } from '../../../src/recipe/load.js';
import { requireHostTools } from '../../support/host-tools.js';
import { FLEET } from '../../support/fleet.js';

function compose(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('docker-compose', args, { cwd, env: { ...process.env }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

let dir: string;
before(async () => {
  requireHostTools('docker-compose');
  dir = await mkdtemp(join(tmpdir(), 'bake-compose-config-'));
  await mkdir(join(dir, 'recipes'));
  await writeFile(join(dir, 'recipes', 'fleet.yaml'), FLEET);
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

test('docker-compose config accepts the fleet file: replicas, health checks, restart, memory and CPU limits, ports, the GPU reservation', { timeout: 120_000 }, async () => {
  const file = join(dir, 'docker-compose.yml');
  await writeCompose(await loadRecipe('fleet', dir), file);
  const r = await compose(['-f', file, 'config'], dir);
  assert.equal(r.code, 0, r.stderr);
  const resolved = parse(r.stdout) as { services: Record<string, Record<string, unknown>> };
  assert.deepEqual(Object.keys(resolved.services).sort(), ['chat-1', 'chat-2', 'chat-3', 'embed-1', 'embed-2', 'gpu-1']);
  const chat = resolved.services['chat-1']!;
  assert.equal(chat.restart, 'unless-stopped');
  assert.equal(chat.image, 'registry.example.com/ml/fleet:2.1.0-chat');
  // `on` stays a string for docker-compose's YAML 1.1 reader (unquoted it would read as true).
  assert.deepEqual(chat.command, ['--ctx-size', '4096', '--ubatch-size', '128', '--flash-attn', 'on']);
  assert.ok(chat.mem_limit !== undefined && chat.cpus !== undefined, JSON.stringify(chat));
  assert.equal((chat.healthcheck as { interval: string }).interval, '10s');
  assert.match(JSON.stringify(resolved.services['embed-2']!.ports), /9001/);
  assert.deepEqual(((resolved.services['gpu-1']!.deploy as { resources: { reservations: { devices: unknown[] } } }).resources.reservations.devices), [{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }]);
});

test('docker-compose config refuses a broken file (the check is real)', { timeout: 120_000 }, async () => {
  const file = join(dir, 'broken.yml');
  await writeCompose(await loadRecipe('fleet', dir), file);
  await writeFile(file, (await readFile(file, 'utf8')).replace('restart: unless-stopped', 'restart: sometimes').replace(/retries: 3/, 'retries: many'));
  const r = await compose(['-f', file, 'config'], dir);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /retries|restart/);
});
