// `bake inspect` takes the 12-hex digests bake prints: `-> <artifact>` when a step ran and
// `cached (<step key>)` when it was skipped. A prefix naming several entries exits 2 listing them.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { bake } from '../support/cli.js';

let dir: string;
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('inspect accepts the 12-hex artifact digests and step keys bake prints; an ambiguous prefix exits 2 listing the candidates', async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-inspect-'));
  await mkdir(join(dir, 'recipes'));
  await mkdir(join(dir, 'models', 'm'), { recursive: true });
  await writeFile(join(dir, 'models', 'm', 'weights.dat'), 'not really weights\n');
  await writeFile(join(dir, 'recipes', 't.yaml'), 'image: { name: bake.local/t, version: 0.1.0 }\nmodels:\n  - id: m\n    path: ../models/m\n    files: [weights.dat]\n    quantize: { format: none }\ntargets: { cpu: { base: scratch } }\n');
  const env = { BAKE_STORE: join(dir, 'store') };
  const run = (args: string[]) => bake(['-C', dir, ...args], { cwd: dir, env });
  assert.equal((await run(['lock', 't'])).code, 0);

  const first = await run(['materialize', 't', '--out', join(dir, 'out')]);
  assert.equal(first.code, 0, first.stderr);
  const artifact = /m: fetch done in [0-9.]+ s -> ([0-9a-f]{12})\n/.exec(first.stderr)?.[1];
  assert.ok(artifact, first.stderr);
  const shown = await run(['--json', 'inspect', artifact]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.deepEqual(JSON.parse(shown.stdout).files.map((f: { path: string }) => f.path), ['weights.dat']);

  const second = await run(['materialize', 't', '--out', join(dir, 'out')]);
  const key = /m: fetch cached \(([0-9a-f]{12})\)/.exec(second.stderr)?.[1];
  assert.ok(key, second.stderr);
  const step = await run(['--json', 'inspect', key]);
  assert.equal(step.code, 0, step.stderr);
  const rec = JSON.parse(step.stdout);
  assert.equal(rec.step.step, 'fetch');
  assert.ok(rec.step.key.startsWith(key));
  assert.deepEqual(rec.artifact.files.map((f: { path: string }) => f.path), ['weights.dat']);

  // Another store entry sharing the printed 12 hex: the prefix no longer names one thing.
  const twin = `${artifact}${'0'.repeat(52)}`;
  await writeFile(join(dir, 'store', 'artifacts', `${twin}.json`), '{}');
  const ambiguous = await run(['inspect', artifact]);
  assert.equal(ambiguous.code, 2, ambiguous.stderr);
  assert.match(ambiguous.stderr, /ambiguous/);
  assert.match(ambiguous.stderr, new RegExp(`artifact ${twin}`));
  assert.match(ambiguous.stderr, new RegExp(`artifact ${artifact}[0-9a-f]{52}`));
});
