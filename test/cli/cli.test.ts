// The CLI as a user runs it: a child process, its exit code, stdout and stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { bake } from '../support/cli.js';

test('--help lists the commands, examples and exit codes', async () => {
  const r = await bake(['--help']);
  assert.equal(r.code, 0);
  for (const c of ['lock', 'pull', 'quantize', 'verify', 'build', 'push', 'plan', 'doctor', 'inspect']) assert.match(r.stdout, new RegExp(`\\n  ${c}\\b`));
  assert.match(r.stdout, /Exit codes:/);
  assert.match(r.stdout, /bake build demo --output oci:out\/demo/);
});

test('a broken recipe prints file:line:col and the field, exit 2; --json gives the same as data', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-cli-'));
  await mkdir(join(dir, 'recipes'));
  await writeFile(join(dir, 'recipes', 'bad.yaml'), 'image: { name: a/b }\nmodels:\n  - id: m\n    repo: a/b\n    quantize: { format: gguf, type: Q4_K_M, bits: 4 }\ntargets: { cpu: {} }\n');
  const r = await bake(['-C', dir, 'inspect', 'bad'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /recipes\/bad\.yaml:5:45: models\[0\]\.quantize\.bits: unknown key "bits"/);
  assert.match(r.stderr, /expected: one of: format, type, source_type/);
  const j = await bake(['--json', '-C', dir, 'inspect', 'bad'], { cwd: dir });
  assert.equal(j.code, 2);
  const e = JSON.parse(j.stdout);
  assert.equal(e.field, 'models[0].quantize.bits');
  assert.equal(e.line, 5);
  assert.equal(e.exit, 2);
});

test('a missing recipe and an unknown target are clear errors', async () => {
  let r = await bake(['inspect', 'no-such-recipe']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /recipe not found: .*recipes\/no-such-recipe\.yaml/);
  r = await bake(['build', 'demo', '--target', 'tpu', '--output', 'oci:/tmp/x']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /recipe demo has no target "tpu"/);
  assert.match(r.stderr, /expected: cpu \(or all\)/);
});

test('inspect shows a lock entry and a recipe; doctor reports each dependency and how to fix it', async () => {
  const entry = await bake(['--json', 'inspect', 'demo/ocr-det']);
  assert.equal(entry.code, 0, entry.stderr);
  const e = JSON.parse(entry.stdout);
  assert.equal(e.files[0].sha256, '30a86f5731181461d08021402766601e4302a9b9b9666be8aff402696339cdff');
  const missing = await bake(['inspect', 'demo/nope']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /no entry demo\/nope/);
  const recipe = await bake(['--json', 'inspect', 'demo']);
  assert.deepEqual(JSON.parse(recipe.stdout).models.map((m: { id: string }) => m.id), ['ocr-det', 'text-encoder', 'tiny-llama']);

  const doctor = await bake(['--json', 'doctor'], { env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock', HF_TOKEN: '' } });
  const checks = JSON.parse(doctor.stdout).checks as { name: string; status: string; fix?: string }[];
  const engine = checks.find((c) => c.name === 'docker engine')!;
  assert.equal(engine.status, 'fail');
  assert.equal(doctor.code, 6, 'no engine is a failed check');
  assert.match(engine.fix!, /dockerd|DOCKER_HOST/);
  assert.match(engine.fix!, /--daemonless/);
  assert.equal(checks.find((c) => c.name === 'hub token')!.status, 'warn');
  assert.ok(checks.some((c) => c.name === 'disk'));
});
