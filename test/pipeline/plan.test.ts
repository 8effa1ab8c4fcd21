// `bake plan` and the run read one declaration: for every quantize format, what plan says will run is
// exactly what the run then executes (counted from its events), with the same keys, whatever prefix of
// the chain is already cached; and a toolchain upgrade changes exactly the keys of the steps using it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRecipe } from '../../src/recipe/load.js';
import { createContext, type PipelineContext } from '../../src/pipeline/context.js';
import { lockModels, planModels } from '../../src/pipeline/api.js';
import { chainFor } from '../../src/pipeline/chain.js';
import { runChain, STAGES } from '../../src/pipeline/run.js';
import type { PipelineEvent } from '../../src/pipeline/events.js';
import { frozenEntries } from '../../src/lock/lockfile.js';
import type { ToolName } from '../../src/pipeline/toolchain.js';
import { convertHfToGguf } from '../../src/quant/gguf/index.js';
import { writeBertFolder } from '../support/onnx-bert.js';
import { STORIES_HF } from '../support/gguf-fixtures.js';
import { REAL_MODELS } from '../support/onnx-models.js';

const RECIPE = `image: { name: bake.test/plan }
models:
  - id: dynamic
    path: ../models/bert
    task: feature-extraction
    quantize: { format: onnx-int8 }
    verify: { runs: 1, min_cosine: 0.5 }
  - id: static
    path: ../models/bert
    task: feature-extraction
    quantize: { format: onnx-int8, mode: static, calibration: { texts: calibration.txt, samples: 4 } }
    verify: { runs: 1, min_cosine: 0.5 }
  - id: fp16
    path: ../models/vad
    quantize: { format: onnx-fp16 }
    verify: { runs: 1, min_cosine: 0.9, inputs: { dims: { "state:1": 1, "input:1": 512 } } }
  - id: from-safetensors
    path: ../models/stories
    files: ["*.json", model.safetensors, tokenizer.model]
    quantize: { format: gguf, type: Q8_0 }
    verify: { max_kld: 1, eval: short-eval.txt }
  - id: from-gguf
    path: ../models/stories-gguf
    quantize: { format: gguf, type: Q8_0 }
    verify: { max_kld: 1, eval: short-eval.txt }
  - id: none
    path: ../models/vad
    quantize: { format: none }
targets:
  all: { base: scratch }
`;

async function project(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-plan-'));
  await mkdir(join(dir, 'recipes'), { recursive: true });
  await writeFile(join(dir, 'recipes', 'plan.yaml'), RECIPE);
  // A short eval text keeps llama.cpp's part of each GGUF verify small (this test is about the chain).
  await writeFile(join(dir, 'recipes', 'short-eval.txt'), 'Once upon a time, there was a little girl named Lily. She liked to play outside in the park with her friends. One day, she saw a big red ball under a tree and ran to get it. Her mom smiled and said it was time to go home.\n');
  await writeFile(join(dir, 'recipes', 'calibration.txt'), 'the quick brown fox\njumps over the lazy dog\na model recipe\nbaked into an image\n');
  await writeBertFolder(join(dir, 'models', 'bert'), { hidden: 32, layers: 1, heads: 2, intermediate: 64 });
  await mkdir(join(dir, 'models', 'vad'), { recursive: true });
  await copyFile(REAL_MODELS.sileroOp15, join(dir, 'models', 'vad', 'silero_vad_16k_op15.onnx'));
  await mkdir(join(dir, 'models', 'stories'), { recursive: true });
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.model', 'tokenizer_config.json']) await copyFile(join(STORIES_HF, f), join(dir, 'models', 'stories', f));
  await mkdir(join(dir, 'models', 'stories-gguf'), { recursive: true });
  await convertHfToGguf(STORIES_HF, join(dir, 'models', 'stories-gguf', 'stories-F16.gguf'), { type: 'F16' });
  return dir;
}

async function ctxFor(dir: string, store: string, opts: { events?: PipelineEvent[]; toolchain?: Partial<Record<ToolName, string>> } = {}): Promise<PipelineContext> {
  return createContext({ project: dir, store, env: { ...process.env, SOURCE_DATE_EPOCH: '0' }, onEvent: (e) => opts.events?.push(e), toolchain: opts.toolchain });
}

test('plan = run for every format, before any run, with each step cached in turn, and after a full run', { timeout: 900_000 }, async (t) => {
  const dir = await project();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const recipe = await parseRecipe(RECIPE, join(dir, 'recipes', 'plan.yaml'));
  await lockModels(await ctxFor(dir, join(dir, 'store-lock')), recipe);
  for (const model of recipe.models) {
    // One full run; then each case starts from a copy of its store with the records of the steps after
    // the cached prefix removed (the same state as running the prefix alone, for half the work).
    const full = join(dir, `store-${model.id}`);
    const ctx = await ctxFor(dir, full);
    const chain = await chainFor({ ctx, recipe, model, entry: frozenEntries(recipe, ctx.lock).get(model.id)! });
    const names = chain.steps.map((s) => s.name);
    const fullRun = await runChain(ctx, chain);
    for (let cachedUpTo = -1; cachedUpTo < names.length; cachedUpTo++) {
      const store = `${full}-${cachedUpTo}`;
      await cp(full, store, { recursive: true });
      for (const s of fullRun.steps.slice(cachedUpTo + 1)) await rm(join(store, 'steps', `${s.key}.json`));
      const plan = (await planModels(await ctxFor(dir, store), recipe, { models: [model.id] })).steps;
      assert.deepEqual(plan.map((p) => p.step), names, `${model.id}: plan lists the chain`);
      const events: PipelineEvent[] = [];
      const run = await runChain(await ctxFor(dir, store, { events }), chain);
      const ran = events.filter((e) => e.type === 'step' && e.status === 'running').map((e) => (e as { step: string }).step);
      const planned = plan.filter((p) => p.action === 'run').map((p) => p.step);
      assert.deepEqual(ran, planned, `${model.id} with ${cachedUpTo + 1} step(s) cached: plan said ${planned.join(',') || 'nothing'} would run; the run ran ${ran.join(',') || 'nothing'}`);
      assert.deepEqual(ran, names.slice(cachedUpTo + 1));
      for (const p of plan) if (p.key) assert.equal(p.key, run.steps.find((s) => s.step === p.step)!.key, `${model.id}/${p.step}: plan's key is the run's`);
      // The step right after the cached prefix has a known key (its inputs exist), so plan can name it.
      if (cachedUpTo + 1 < names.length) assert.ok(plan[cachedUpTo + 1]!.key, `${model.id}: the next step's key is known`);
      const after = (await planModels(await ctxFor(dir, store), recipe, { models: [model.id] })).steps;
      assert.ok(after.every((p) => p.action === 'cached'), `${model.id}: everything cached after a full run`);
      assert.deepEqual(after.map((p) => p.key), run.steps.map((s) => s.key));
      await rm(store, { recursive: true, force: true });
    }
  }
});

test('a changed toolchain version changes exactly the keys of the steps that use it', { timeout: 600_000 }, async (t) => {
  const dir = await project();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const recipe = await parseRecipe(RECIPE, join(dir, 'recipes', 'plan.yaml'));
  await lockModels(await ctxFor(dir, join(dir, 'store')), recipe);
  const store = join(dir, 'store');
  const ctx = await ctxFor(dir, store);
  const ids = ['dynamic', 'fp16', 'from-safetensors', 'from-gguf', 'none'];
  const chains = await Promise.all(ids.map((id) => chainFor({ ctx, recipe, model: recipe.models.find((m) => m.id === id)!, entry: frozenEntries(recipe, ctx.lock).get(id)! })));
  for (const c of chains) await runChain(ctx, c);
  const before = (await planModels(ctx, recipe, { models: ids })).steps;
  assert.ok(before.every((p) => p.action === 'cached'));
  for (const tool of ['onnxruntime', 'llama.cpp', 'gguf-kernels'] as ToolName[]) {
    const upgraded = (await planModels(await ctxFor(dir, store, { toolchain: { [tool]: `${ctx.toolchain[tool]}+upgrade` } }), recipe, { models: ids })).steps;
    for (const c of chains) {
      let upstreamChanged = false;
      for (const def of c.steps) {
        const p = upgraded.find((x) => x.model === c.model.id && x.step === def.name)!;
        const b = before.find((x) => x.model === c.model.id && x.step === def.name)!;
        if (def.tools.includes(tool) && !upstreamChanged) {
          assert.equal(p.action, 'run', `${c.model.id}/${def.name} uses ${tool}: it re-runs`);
          assert.notEqual(p.key, b.key);
          upstreamChanged = true;
        } else if (!upstreamChanged) {
          assert.equal(p.action, 'cached', `${c.model.id}/${def.name} does not use ${tool}: still cached`);
          assert.equal(p.key, b.key);
        } else {
          assert.equal(p.action, 'run', `${c.model.id}/${def.name}: downstream of a re-run`);
        }
      }
    }
  }
  // Every tool is used by some step: none is recorded for nothing.
  const used = new Set(chains.flatMap((c) => c.steps.flatMap((s) => s.tools)));
  assert.deepEqual([...used].sort(), ['gguf-kernels', 'llama.cpp', 'onnxruntime']);
  assert.deepEqual(STAGES, ['fetch', 'convert', 'quantize', 'verify', 'package']);
});
