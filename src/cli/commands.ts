// One entry per `bake` subcommand: its arguments, options and a run function over the pipeline.
import { mkdir, readFile, rm, utimes } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import PQueue from 'p-queue';
import { hubConfigFromEnv } from '../hub/config.js';
import { frozenEntries, lockfilePath, readLockfile, serializeLockfile, writeLockfile } from '../lock/lockfile.js';
import { lockRecipe } from '../lock/lock.js';
import { loadRecipe } from '../recipe/load.js';
import { TARGET_NAMES, type Recipe, type TargetName } from '../recipe/types.js';
import { Store, defaultStoreRoot, listTree } from '../store/store.js';
import { InputError, type ExitCodeName } from '../util/errors.js';
import { sourceDateEpoch, type PipelineContext } from '../pipeline/context.js';
import { fetchModel, prepareModel, type PreparedModel } from '../pipeline/model.js';
import { quantizerFor } from '../pipeline/quantizers.js';
import { planRecipe } from '../pipeline/plan.js';
import type { Renderer } from './render.js';

export interface RunInput {
  args: string[];
  opts: Record<string, unknown>;
  globals: { json?: boolean; store?: string; project: string; quiet?: boolean };
  render: Renderer;
}

export interface CommandDef {
  name: string;
  description: string;
  args?: { name: string; description: string; required?: boolean }[];
  options?: { flags: string; description: string; default?: unknown; choices?: string[]; env?: string }[];
  examples?: string[];
  /** `exit`: the exit code when the command ran but its result is a failure (default ok). */
  run(input: RunInput): Promise<{ value: unknown; text: string; exit?: ExitCodeName }>;
}

async function context(input: RunInput): Promise<PipelineContext> {
  const root = resolve(input.globals.project);
  return {
    store: new Store(input.globals.store ?? defaultStoreRoot()),
    hub: hubConfigFromEnv(process.env),
    lock: await readLockfile(lockfilePath(root)),
    root,
    onEvent: (e) => input.render.event(e),
    epoch: sourceDateEpoch(),
    force: Boolean(input.opts.force),
  };
}

async function recipeOf(input: RunInput): Promise<Recipe> {
  return loadRecipe(input.args[0]!, resolve(input.globals.project));
}

function selectModels(recipe: Recipe, only: unknown): Recipe['models'] {
  const ids = (only as string[] | undefined) ?? [];
  for (const id of ids) {
    if (!recipe.models.some((m) => m.id === id)) throw new InputError(`--model ${id}: recipe ${recipe.name} has no such model`, { file: recipe.file, expected: recipe.models.map((m) => m.id).join(', ') });
  }
  return ids.length ? recipe.models.filter((m) => ids.includes(m.id)) : recipe.models;
}

function selectTargets(recipe: Recipe, target: unknown): TargetName[] {
  const t = (target as string | undefined) ?? 'all';
  if (t === 'all') return recipe.targets.map((x) => x.name);
  if (!(TARGET_NAMES as readonly string[]).includes(t)) throw new InputError(`--target ${t}: unknown target`, { expected: [...TARGET_NAMES, 'all'].join(', ') });
  if (!recipe.targets.some((x) => x.name === t)) throw new InputError(`--target ${t}: recipe ${recipe.name} declares no such target`, { file: recipe.file, field: 'targets', expected: recipe.targets.map((x) => x.name).join(', '), hint: `add it under targets: in ${recipe.file}` });
  return [t as TargetName];
}

/** Prepares the selected models in parallel (two at a time: quantizing is CPU-bound). */
async function prepareAll(ctx: PipelineContext, recipe: Recipe, models: Recipe['models']): Promise<Map<string, PreparedModel>> {
  const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
  const queue = new PQueue({ concurrency: 2 });
  const out = new Map<string, PreparedModel>();
  await Promise.all(models.map((m) => queue.add(async () => out.set(m.id, await prepareModel(ctx, recipe, m, entries.get(m.id)!)))));
  return out;
}

const modelOption = { flags: '-m, --model <id...>', description: 'only these models of the recipe' };
const forceOption = { flags: '--force', description: 're-run steps even when their results are cached' };

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

function fmt(v: number | undefined): string {
  if (v === undefined) return '-';
  return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(5);
}

export const commands: CommandDef[] = [
  {
    name: 'lock',
    description: 'resolve every model of a recipe to a commit and file digests, and write models.lock',
    args: [{ name: 'recipe', description: 'recipe name (recipes/<name>.yaml) or path', required: true }],
    options: [
      { flags: '-u, --update <id...>', description: 're-resolve these models even if the lock matches the recipe' },
      { flags: '--check', description: 'do not write: exit 2 if models.lock would change (for CI)' },
    ],
    examples: ['bake lock rag-service', 'bake lock rag-service --update e5', 'bake lock rag-service --check'],
    async run(input) {
      const ctx = await context(input);
      const recipe = await recipeOf(input);
      const { lock, changes } = await lockRecipe(recipe, ctx.lock, ctx.hub, { update: input.opts.update as string[] | undefined, root: ctx.root });
      const file = lockfilePath(ctx.root);
      const changed = serializeLockfile(lock) !== serializeLockfile(ctx.lock);
      if (input.opts.check) {
        if (changed) throw new InputError(`${file} is not up to date with recipe ${recipe.name}`, { file, hint: `run \`bake lock ${recipe.name}\` and commit models.lock` });
      } else if (changed) {
        await writeLockfile(lock, file);
      }
      const text = changes.map((c) => `${c.action.padEnd(9)} ${c.key} ${c.commit.slice(0, 12)}${c.previous && c.previous !== c.commit ? ` (was ${c.previous.slice(0, 12)})` : ''}`).join('\n');
      return { value: { lockfile: file, written: changed && !input.opts.check, changes }, text };
    },
  },
  {
    name: 'pull',
    description: 'download the locked files (Hub cache layout) and check every digest',
    args: [{ name: 'recipe', description: 'recipe name or path', required: true }],
    options: [modelOption, forceOption],
    examples: ['bake pull rag-service', 'HF_HUB_OFFLINE=1 bake pull rag-service   # from the cache only'],
    async run(input) {
      const ctx = await context(input);
      const recipe = await recipeOf(input);
      const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
      const results = [];
      for (const m of selectModels(recipe, input.opts.model)) {
        const r = await fetchModel(ctx, recipe, m, entries.get(m.id)!, { fillHubCache: true });
        const bytes = r.artifact.files.reduce((a, f) => a + f.size, 0);
        results.push({ model: m.id, artifact: r.digest, cached: r.cached, files: r.artifact.files.length, bytes });
      }
      return { value: { models: results }, text: table([['model', 'files', 'bytes', 'artifact'], ...results.map((r) => [r.model, String(r.files), String(r.bytes), r.artifact.slice(0, 12)])]) };
    },
  },
  {
    name: 'quantize',
    description: 'quantize the locked models as the recipe says (fetching them first if needed)',
    args: [{ name: 'recipe', description: 'recipe name or path', required: true }],
    options: [modelOption, forceOption],
    async run(input) {
      const ctx = await context(input);
      const recipe = await recipeOf(input);
      const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
      const rows = [];
      for (const m of selectModels(recipe, input.opts.model)) {
        const source = await fetchModel(ctx, recipe, m, entries.get(m.id)!);
        const { quantized } = await quantizerFor(m.quantize).quantize(ctx, m, source, dirname(recipe.file));
        const before = source.artifact.files.reduce((a, f) => a + f.size, 0);
        const after = quantized.artifact.files.reduce((a, f) => a + f.size, 0);
        rows.push({ model: m.id, format: m.quantize.format, artifact: quantized.digest, files: quantized.artifact.files.map((f) => f.path), bytesBefore: before, bytesAfter: after });
      }
      return { value: { models: rows }, text: table([['model', 'format', 'bytes before', 'bytes after', 'artifact'], ...rows.map((r) => [r.model, r.format, String(r.bytesBefore), String(r.bytesAfter), r.artifact.slice(0, 12)])]) };
    },
  },
  {
    name: 'verify',
    description: 'quantize and check each model against its original; fails (exit 5) when a gate fails',
    args: [{ name: 'recipe', description: 'recipe name or path', required: true }],
    options: [modelOption, forceOption],
    examples: ['bake verify rag-service', 'bake verify rag-service --json > report.json'],
    async run(input) {
      const ctx = await context(input);
      const recipe = await recipeOf(input);
      const prepared = await prepareAll(ctx, recipe, selectModels(recipe, input.opts.model));
      const reports = [...prepared.values()].map((p) => p.report ?? { model: p.id, skipped: true });
      const rows: string[][] = [['model', 'metric', 'value', 'gate']];
      for (const p of prepared.values()) {
        if (!p.report) {
          rows.push([p.id, '(not verified)', '-', '-']);
          continue;
        }
        for (const [k, v] of Object.entries(p.report.metrics).sort()) {
          const g = p.report.gates.find((x) => x.metric === k);
          rows.push([p.id, k, fmt(v), g ? `${g.comparison} ${g.threshold} ${g.passed ? 'ok' : 'FAILED'}` : '']);
        }
      }
      return { value: { reports }, text: table(rows) };
    },
  },
  {
    name: 'materialize',
    description: 'run the whole model chain and write /app/models/<id>/ folders (used by the Dockerfile models stage)',
    args: [{ name: 'recipe', description: 'recipe name or path', required: true }],
    options: [modelOption, forceOption, { flags: '-o, --out <dir>', description: 'folder that receives <id>/ for each model', default: 'out/models' }],
    examples: ['bake materialize rag-service --model e5 --out /out/models'],
    async run(input) {
      const ctx = await context(input);
      const recipe = await recipeOf(input);
      const prepared = await prepareAll(ctx, recipe, selectModels(recipe, input.opts.model));
      const out = resolve(input.opts.out as string);
      const written = [];
      for (const p of prepared.values()) {
        const dir = join(out, p.id);
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
        const artifact = await ctx.store.materialize(p.packaged.digest, dir);
        // Fixed times: identical model bytes give identical layers however often the stage re-runs.
        for (const rel of await listTree(dir)) await utimes(join(dir, rel), ctx.epoch, ctx.epoch);
        written.push({ model: p.id, dir, files: artifact.files.length, artifact: p.packaged.digest });
      }
      return { value: { models: written }, text: written.map((w) => `${w.model} -> ${w.dir} (${w.files} files)`).join('\n') };
    },
  },
  {
    name: 'plan',
    description: 'show which steps would run for a recipe and why, from the cache state',
    args: [{ name: 'recipe', description: 'recipe name or path', required: true }],
    async run(input) {
      const ctx = await context(input);
      const recipe = await recipeOf(input);
      const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
      const steps = await planRecipe(ctx, recipe, entries);
      return { value: { recipe: recipe.name, steps }, text: table([['model', 'step', 'action', 'why'], ...steps.map((s) => [s.model, s.step, s.action, s.reason])]) };
    },
  },
  {
    name: 'build',
    description: 'bake the recipe into images: daemonless with --output, else through the Docker engine',
    args: [{ name: 'recipe', description: 'recipe name or path', required: true }],
    options: [
      { flags: '-t, --target <target>', description: 'cuda, llamacpp, cpu or all', default: 'all' },
      { flags: '-o, --output <dest>', description: 'oci:<dir> (OCI image layout) or docker-archive:<file> (for docker load); no engine needed' },
      { flags: '--compression <c>', description: 'model layer compression (none: weights barely compress, digest = diff_id)', default: 'none', choices: ['none', 'gzip'] },
      { flags: '--base <ref>', description: 'override the target base image (scratch, oci:<dir>[:tag], or a registry ref)' },
      { flags: '--push <repo>', description: 'also push to this registry repository (host/name)' },
      { flags: '--bundle-models <bool>', description: 'false: no model bytes in the image; the runtime fetches the locked files at start (engine builds)', default: 'true', choices: ['true', 'false'] },
      { flags: '--dockerfile-only', description: 'write docker/<recipe>/Dockerfile and docker/docker-bake.hcl, build nothing' },
      { flags: '--network <mode>', description: 'network of RUN steps in engine builds: none, or host to reach a Hub or mirror', default: 'none', choices: ['none', 'host'] },
      forceOption,
    ],
    examples: ['bake build demo --output oci:out/demo', 'bake build rag-service --target cpu', 'bake build rag-service --output docker-archive:rag.tar && docker load -i rag.tar'],
    async run(input) {
      const recipe = await recipeOf(input);
      const targets = selectTargets(recipe, input.opts.target);
      const output = input.opts.output as string | undefined;
      if (!output && !input.opts.push) {
        const { buildWithEngine } = await import('./engine.js');
        return buildWithEngine(input, recipe, targets);
      }
      return bakeDaemonless(input, recipe, targets, output, input.opts.push as string | undefined);
    },
  },
  {
    name: 'push',
    description: 'push the baked images to a registry with release tags (OCI distribution API)',
    args: [{ name: 'recipe', description: 'recipe name or path', required: true }],
    options: [
      { flags: '--to <repo>', description: 'registry repository, e.g. 127.0.0.1:5000/ml/rag-service (default: image.name of the recipe)' },
      { flags: '-t, --target <target>', description: 'cuda, llamacpp, cpu or all', default: 'all' },
      { flags: '--base <ref>', description: 'override the target base image' },
    ],
    async run(input) {
      const recipe = await recipeOf(input);
      const targets = selectTargets(recipe, input.opts.target);
      return bakeDaemonless(input, recipe, targets, undefined, (input.opts.to as string | undefined) ?? recipe.image.name);
    },
  },
  {
    name: 'doctor',
    description: 'check the Docker engine, registry, disk, Hub token and cache',
    options: [{ flags: '--registry <host>', description: 'registry to check (host:port)' }],
    async run(input) {
      const { runDoctor } = await import('./doctor.js');
      return runDoctor(input);
    },
  },
  {
    name: 'inspect',
    description: 'show a recipe, a lock entry (<recipe>/<model>), a store artifact (sha256) or an OCI layout',
    args: [{ name: 'what', description: 'recipe name, <recipe>/<model>, artifact digest or step key (12 or more hex, as bake prints them), or oci:<dir>', required: true }],
    async run(input) {
      const what = input.args[0]!;
      const root = resolve(input.globals.project);
      if (/^(sha256:)?[0-9a-fA-F]{12,64}$/.test(what)) {
        const value = await new Store(input.globals.store ?? defaultStoreRoot()).describe(what);
        return { value, text: JSON.stringify(value, null, 2) };
      }
      if (what.startsWith('oci:')) {
        const dir = resolve(root, what.slice(4));
        const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
        return { value: index, text: JSON.stringify(index, null, 2) };
      }
      if (what.includes('/') && !what.endsWith('.yaml')) {
        const lock = await readLockfile(lockfilePath(root));
        const e = lock.models[what];
        if (!e) throw new InputError(`models.lock has no entry ${what}`, { expected: Object.keys(lock.models).join(', ') || '(the lock is empty: run `bake lock <recipe>`)' });
        return { value: e, text: JSON.stringify(e, null, 2) };
      }
      const recipe = await loadRecipe(what, root);
      return { value: recipe, text: JSON.stringify(recipe, null, 2) };
    },
  },
];

async function bakeDaemonless(input: RunInput, recipe: Recipe, targets: TargetName[], output: string | undefined, pushTo: string | undefined): Promise<{ value: unknown; text: string }> {
  if (input.opts.bundleModels === 'false') {
    throw new InputError('--bundle-models false is for engine builds (docker build --build-arg BUNDLE_MODELS=false); a daemonless image without models would be its base image', { field: '--bundle-models' });
  }
  const ctx = await context(input);
  const { bakeImage } = await import('../pipeline/bake.js');
  const oci = await import('../image/oci/index.js');
  const prepared = await prepareAll(ctx, recipe, recipe.models);
  const entries = frozenEntries(recipe, ctx.lock, lockfilePath(ctx.root));
  const results = [];
  for (const target of targets) {
    const baked = await bakeImage(ctx, recipe, target, prepared, entries, { compression: input.opts.compression as 'none' | 'gzip', base: input.opts.base as string | undefined });
    const r: Record<string, unknown> = { target, tags: baked.tags, modelsDigest: baked.modelsDigest };
    if (output?.startsWith('oci:')) {
      const { manifestDigest } = await oci.writeOciLayout(baked.image, resolve(output.slice(4)), { tags: baked.tags });
      r.manifestDigest = manifestDigest;
      r.output = output;
    } else if (output?.startsWith('docker-archive:')) {
      const file = targets.length > 1 ? output.slice(15).replace(/(\.tar)?$/, `-${target}$1`) : output.slice(15);
      const { manifestDigest } = await oci.writeDockerArchive(baked.image, resolve(file), { repoTags: baked.tags.map((t) => `${recipe.image.name}:${t}`) });
      r.manifestDigest = manifestDigest;
      r.output = `docker-archive:${file}`;
    } else if (output) {
      throw new InputError(`--output ${output}: unknown destination`, { field: '--output', expected: 'oci:<dir> or docker-archive:<file>' });
    }
    if (pushTo) {
      const pushed = await oci.pushImage(baked.image, pushTo, { tags: baked.tags, insecure: /^(127\.|localhost)/.test(pushTo), onEvent: (e) => ctx.onEvent({ type: 'log', step: 'push', message: `${e.type} ${e.digest ?? ''}` }) });
      r.pushed = { repository: pushTo, ...pushed };
      r.manifestDigest ??= pushed.manifestDigest;
    }
    results.push(r);
  }
  const text = results.map((r) => `${r.target}: ${r.manifestDigest} ${(r.tags as string[]).join(', ')}${r.output ? ` -> ${r.output}` : ''}${r.pushed ? ` -> ${pushTo}` : ''}`).join('\n');
  return { value: { recipe: recipe.name, images: results }, text };
}
