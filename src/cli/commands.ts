// One entry per `bake` subcommand: its arguments and options, a call into the pipeline API, and how
// its result reads as text. No orchestration lives here.
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { loadRecipe } from '../recipe/load.js';
import type { Recipe } from '../recipe/types.js';
import { createContext, type PipelineContext } from '../pipeline/context.js';
import type { BuildResult, ModelResult } from '../pipeline/api.js';
import type { BakeReport } from '../report/model.js';
import type { CommandDef, RunInput } from './types.js';
import { bytes, fmt, table } from './text.js';
import { InputError } from '../util/errors.js';

export type { CommandDef, RunInput } from './types.js';

function context(input: RunInput): Promise<PipelineContext> {
  return createContext({ project: input.globals.project, store: input.globals.store, onEvent: (e) => input.render.event(e), force: Boolean(input.opts.force) });
}

function recipeOf(input: RunInput): Promise<Recipe> {
  return loadRecipe(input.args[0]!, resolve(input.globals.project));
}

const api = () => import('../pipeline/api.js');
const recipeArg = { name: 'recipe', description: 'recipe name (recipes/<name>.yaml) or path', required: true };
const modelOption = { flags: '-m, --model <id...>', description: 'only these models of the recipe' };
const forceOption = { flags: '--force', description: 're-run steps even when their results are cached' };
const targetOption = { flags: '-t, --target <target>', description: 'a target of the recipe, or all', default: 'all' };

/** Where `bake build` writes its report: beside the OCI layout or archive, else out/<recipe>. */
function reportPlace(root: string, recipe: string, output: string | undefined): { dir: string; name: string } {
  if (output?.startsWith('oci:')) {
    const dir = resolve(root, output.slice(4));
    return { dir: dirname(dir), name: basename(dir) };
  }
  if (output?.startsWith('docker-archive:')) {
    const file = resolve(root, output.slice(15));
    return { dir: dirname(file), name: basename(file).replace(/\.tar$/, '') };
  }
  return { dir: join(root, 'out'), name: recipe };
}

async function writeBuildReport(ctx: PipelineContext, recipe: Recipe, r: BuildResult, place: { dir: string; name: string }): Promise<{ report: BakeReport; files: { json: string; html: string } }> {
  const report = (await api()).reportOf(ctx, recipe, r);
  const { writeReport } = await import('../report/write.js');
  return { report, files: await writeReport(report, place.dir, place.name) };
}

function gateSummaryText(report: BakeReport): string {
  const lines = [`gates: ${report.passed ? 'passed' : 'FAILED'} (${report.summary.gates - report.summary.failed_gates}/${report.summary.gates} passed, ${report.summary.verified}/${report.summary.models} models verified)`];
  for (const m of report.models) {
    const failed = m.verification.gates.filter((g) => !g.passed);
    lines.push(`  ${m.id} (${m.variant}): ${m.verification.status}${failed.length ? ` - ${failed.map((g) => `${g.metric} ${g.value ?? 'unmeasured'} fails ${g.comparison} ${g.threshold}`).join('; ')}` : ''}`);
  }
  return lines.join('\n');
}

/** `name=value` command-line pairs. */
function pairs(values: unknown, flag: string): [string, string][] {
  return ((values as string[] | undefined) ?? []).map((v) => {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new InputError(`${flag} ${v}: expected <target>=<value>`, { field: flag, expected: '<target>=<value>, e.g. chat=2' });
    return [v.slice(0, eq), v.slice(eq + 1)];
  });
}

function countOf(v: string, target: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new InputError(`--replicas ${target}=${v}: not a replica count`, { field: '--replicas', expected: 'an integer from 0 to 64' });
  return n;
}

/** The bench result as a table: one row per setting, the best marked, then where each number comes from. */
function benchTable(r: import('../tune/index.js').BenchResult): string {
  const keys = [...new Set(r.points.flatMap((p) => Object.keys(p.settings)))];
  const cols = r.workload.kind === 'embedding'
    ? [['embeddings_per_s', 'emb/s']]
    : [['ttft_p50_ms', 'ttft p50 ms'], ['ttft_p95_ms', 'ttft p95 ms'], ['gen_tps', 'gen tok/s'], ['prompt_tps', 'prompt tok/s']];
  const rows = [[...keys, ...cols.map((c) => c[1]!), 'rss MiB', 'errors', '']];
  for (const p of r.points) {
    const m = p.metrics as unknown as Record<string, number | undefined>;
    rows.push([...keys.map((k) => String(p.settings[k] ?? '')), ...cols.map(([k]) => (m[k!] === undefined ? '-' : m[k!]!.toFixed(1))), m.rss_bytes === undefined ? '-' : (m.rss_bytes / 1048576).toFixed(1), String(p.metrics.errors), p.best ? `* best ${r.objective.metric} (${r.objective.better})` : '']);
  }
  const head = `${r.recipe}/${r.target} on ${r.server}: ${r.workload.requests} ${r.workload.kind} requests per setting, ${r.workload.concurrency} at once${r.workload.kind === 'chat' ? `, ${r.workload.maxTokens} tokens each` : ''}`;
  return [head, table(rows), ...Object.entries(r.sources).map(([k, v]) => `  ${k}: ${v}`)].join('\n');
}

function stepsText(models: ModelResult[]): string {
  return table([['model', 'format', 'steps', 'bytes before', 'bytes after', 'artifact'], ...models.map((m) => [
    m.id, m.format, m.steps.map((s) => `${s.step}${s.cached ? '' : '*'}`).join(' '), bytes(m.sourceBytes), m.quantizedBytes === undefined ? '-' : bytes(m.quantizedBytes), m.artifact?.slice(0, 12) ?? '-',
  ])]) + '\n(* ran now; the others came from the cache)';
}

export const commands: CommandDef[] = [
  {
    name: 'lock',
    description: 'resolve every model of a recipe to a commit and file digests, and write models.lock',
    args: [recipeArg],
    options: [
      { flags: '-u, --update <id...>', description: 're-resolve these models even if the lock matches the recipe' },
      { flags: '--check', description: 'do not write: exit 2 if models.lock would change (for CI)' },
    ],
    examples: ['bake lock rag-service', 'bake lock rag-service --update e5', 'bake lock rag-service --check'],
    async run(input) {
      const r = await (await api()).lockModels(await context(input), await recipeOf(input), { update: input.opts.update as string[] | undefined, check: Boolean(input.opts.check) });
      const text = r.changes.map((c) => `${c.action.padEnd(9)} ${c.key} ${c.commit.slice(0, 12)}${c.previous && c.previous !== c.commit ? ` (was ${c.previous.slice(0, 12)})` : ''}`).join('\n');
      return { value: r, text };
    },
  },
  {
    name: 'pull',
    description: 'download the locked files (Hub cache layout) and check every digest',
    args: [recipeArg],
    options: [modelOption, forceOption],
    examples: ['bake pull rag-service', 'HF_HUB_OFFLINE=1 bake pull rag-service   # from the cache only'],
    async run(input) {
      const r = await (await api()).pullModels(await context(input), await recipeOf(input), { models: input.opts.model as string[] | undefined });
      return { value: r, text: table([['model', 'files', 'bytes', 'artifact'], ...r.models.map((m) => [m.id, String(m.steps.length ? m.files?.length ?? '-' : '-'), bytes(m.sourceBytes), m.artifact?.slice(0, 12) ?? '-'])]) };
    },
  },
  {
    name: 'quantize',
    description: 'quantize the locked models as the recipe says (fetching them first if needed)',
    args: [recipeArg],
    options: [modelOption, forceOption],
    async run(input) {
      const r = await (await api()).quantizeModels(await context(input), await recipeOf(input), { models: input.opts.model as string[] | undefined });
      return { value: r, text: stepsText(r.models) };
    },
  },
  {
    name: 'verify',
    description: 'quantize and check each model against its original; fails (exit 5) when a gate fails',
    args: [recipeArg],
    options: [modelOption, forceOption],
    examples: ['bake verify rag-service', 'bake verify rag-service --json > report.json'],
    async run(input) {
      const r = await (await api()).verifyModels(await context(input), await recipeOf(input), { models: input.opts.model as string[] | undefined });
      const rows: string[][] = [['model', 'metric', 'value', 'gate']];
      for (const m of r.models) {
        if (!m.report) {
          rows.push([m.id, '(not verified)', '-', '-']);
          continue;
        }
        for (const [k, v] of Object.entries(m.report.metrics).sort()) {
          const g = m.report.gates.find((x) => x.metric === k);
          rows.push([m.id, k, fmt(v), g ? `${g.comparison} ${g.threshold} ${g.passed ? 'ok' : 'FAILED'}` : '']);
        }
      }
      return { value: { ...r, reports: r.models.map((m) => m.report ?? { model: m.id, skipped: true }) }, text: table(rows) };
    },
  },
  {
    name: 'materialize',
    description: 'run the whole model chain and write <out>/<id>/ folders (used by the Dockerfile models stage)',
    args: [recipeArg],
    options: [modelOption, forceOption, { flags: '-o, --out <dir>', description: 'folder that receives <id>/ for each model', default: 'out/models' }],
    examples: ['bake materialize rag-service --model e5 --out /out/models'],
    async run(input) {
      const r = await (await api()).materializeModels(await context(input), await recipeOf(input), { models: input.opts.model as string[] | undefined, out: input.opts.out as string });
      return { value: r, text: r.models.map((m) => `${m.id} -> ${m.dir} (${(m.files?.length ?? 0) + 1} files)`).join('\n') };
    },
  },
  {
    name: 'plan',
    description: 'show which steps would run for a recipe and why, with the keys the run will use',
    args: [recipeArg],
    options: [modelOption, forceOption],
    async run(input) {
      const r = await (await api()).planModels(await context(input), await recipeOf(input), { models: input.opts.model as string[] | undefined });
      return { value: r, text: table([['model', 'step', 'action', 'key', 'why'], ...r.steps.map((s) => [s.model, s.step, s.action, s.key?.slice(0, 12) ?? '?', s.reason])]) };
    },
  },
  {
    name: 'build',
    description: 'bake the recipe into images: daemonless with --output or --push, else through the Docker engine',
    args: [recipeArg],
    options: [
      targetOption,
      { flags: '-o, --output <dest>', description: 'oci:<dir> (OCI image layout) or docker-archive:<file> (for docker load); no engine needed' },
      { flags: '--compression <c>', description: 'model layer compression (none: weights barely compress, digest = diff_id)', default: 'none', choices: ['none', 'gzip'] },
      { flags: '--base <ref>', description: 'override the target base image (scratch, oci:<dir>[:tag], or a registry ref)' },
      { flags: '--push <repo>', description: 'also push to this registry repository (host/name)' },
      { flags: '--bundle-models <bool>', description: 'false: no model bytes in the image; at start the runtime pulls each model\'s layer from the registry `bake push` pushed it to, else quantizes at start', default: 'true', choices: ['true', 'false'] },
      { flags: '--models-from <repo>', description: 'with --bundle-models false: the registry repository holding the model layers (default: the recipe\'s image.name)' },
      { flags: '--dockerfile-only', description: 'write docker/<recipe>/Dockerfile and docker/docker-bake.hcl, build nothing' },
      { flags: '--network <mode>', description: 'network of RUN steps in engine builds: none, or host to reach a Hub or mirror', default: 'none', choices: ['none', 'host'] },
      { flags: '--no-report', description: 'do not write <output>.report.html and .report.json beside the output (daemonless builds)' },
      { flags: '--no-attach', description: 'with --push: do not push the report and provenance artifacts' },
      forceOption,
    ],
    examples: ['bake build demo --output oci:out/demo    # also writes out/demo.report.html and .json', 'bake build rag-service --target cpu', 'bake build rag-service --output docker-archive:rag.tar && docker load -i rag.tar'],
    async run(input) {
      const o = input.opts;
      const ctx = await context(input);
      const recipe = await recipeOf(input);
      const r = await (await api()).buildImages(ctx, recipe, {
        target: o.target as string, output: o.output as string | undefined, push: o.push as string | undefined, base: o.base as string | undefined,
        compression: o.compression as 'none' | 'gzip', bundleModels: o.bundleModels !== 'false', modelsRepository: o.modelsFrom as string | undefined, network: o.network as 'none' | 'host', dockerfileOnly: Boolean(o.dockerfileOnly),
        attach: o.attach !== false,
      });
      const lines = [...(r.dockerfile ? [`wrote ${r.dockerfile}`] : []), ...(r.bakeHcl ? [`wrote ${r.bakeHcl}`] : [])];
      for (const i of r.images) lines.push(`${i.target} (${i.server}): ${i.manifestDigest ?? i.imageId} ${i.tags.join(', ')}${i.size ? ` ${bytes(i.size)}` : ''}${i.output ? ` -> ${i.output}` : ''}${i.pushed ? ` -> ${i.pushed.repository}` : ''}`);
      // Engine builds run the models inside the build: the report needs the daemonless path's results.
      if (o.report !== false && r.models.length && (o.output || o.push)) {
        const { files } = await writeBuildReport(ctx, recipe, r, reportPlace(ctx.root, recipe.name, o.output as string | undefined));
        lines.push(`report: ${files.html} (and ${basename(files.json)})`);
        return { value: { ...r, report: files }, text: lines.join('\n') };
      }
      return { value: r, text: lines.join('\n') };
    },
  },
  {
    name: 'report',
    description: 'write the build report: one self-contained HTML page with charts, and its JSON (exit 5 when a gate failed)',
    args: [recipeArg],
    options: [
      { flags: '-o, --out <dir>', description: 'folder that receives <recipe>.report.html and <recipe>.report.json', default: 'out' },
      targetOption,
      { flags: '--base <ref>', description: 'override the target base image' },
      forceOption,
    ],
    examples: ['bake report demo                 # out/demo.report.html', 'bake report demo --json > report.json   # the same JSON on stdout'],
    async run(input) {
      const ctx = await context(input);
      const recipe = await recipeOf(input);
      const { report } = await (await api()).reportRecipe(ctx, recipe, { target: input.opts.target as string, base: input.opts.base as string | undefined });
      const { writeReport } = await import('../report/write.js');
      const files = await writeReport(report, resolve(ctx.root, input.opts.out as string), recipe.name);
      return { value: report, text: `wrote ${files.html}\nwrote ${files.json}\n${gateSummaryText(report)}`, ...(report.passed ? {} : { exit: 'gate' as const }) };
    },
  },
  {
    name: 'push',
    description: 'push the baked images to a registry with release tags (OCI distribution API)',
    args: [recipeArg],
    options: [
      { flags: '--to <repo>', description: 'registry repository, e.g. 127.0.0.1:5000/ml/rag-service (default: image.name of the recipe)' },
      targetOption,
      { flags: '--base <ref>', description: 'override the target base image' },
      { flags: '--no-attach', description: 'do not push the report and provenance artifacts that refer to each image' },
    ],
    async run(input) {
      const recipe = await recipeOf(input);
      const r = await (await api()).buildImages(await context(input), recipe, { target: input.opts.target as string, push: (input.opts.to as string | undefined) ?? recipe.image.name, base: input.opts.base as string | undefined, attach: input.opts.attach !== false });
      return {
        value: r,
        text: r.images.map((i) => [`${i.target}: ${i.manifestDigest} ${i.tags.join(', ')} -> ${i.pushed?.repository}`, ...(i.pushed?.referrers ?? []).map((a) => `  ${a.artifactType} ${a.digest} (${a.via})`)].join('\n')).join('\n'),
      };
    },
  },
  {
    name: 'compose',
    description: 'write a docker-compose file for the recipe\'s fleet: each target\'s deploy.replicas, with health checks, restart policy, limits and GPUs',
    args: [recipeArg],
    options: [
      { flags: '-o, --out <file>', description: 'where to write it (default docker/<recipe>/docker-compose.yml)' },
      { flags: '--replicas <target=n...>', description: 'replica counts overriding the recipe\'s deploy.replicas' },
      { flags: '--image <target=ref...>', description: 'image references overriding <image.name>:<version>-<target>' },
    ],
    examples: ['bake compose chat-llamacpp && docker compose -f docker/chat-llamacpp/docker-compose.yml up -d', 'bake compose chat-llamacpp --replicas chat=4 embed=2'],
    async run(input) {
      const { writeCompose } = await import('../image/compose/index.js');
      const recipe = await recipeOf(input);
      const out = resolve(input.globals.project, (input.opts.out as string | undefined) ?? join('docker', recipe.name, 'docker-compose.yml'));
      const file = await writeCompose(recipe, out, {
        replicas: Object.fromEntries(pairs(input.opts.replicas, '--replicas').map(([t, n]) => [t, countOf(n, t)])),
        images: Object.fromEntries(pairs(input.opts.image, '--image')),
      });
      const names = Object.keys(file.services);
      return { value: { file: out, services: file.services }, text: `wrote ${out} (${names.length} services: ${names.join(', ')})` };
    },
  },
  {
    name: 'bench',
    description: 'measure a llama-server target (time to first token, tokens/s, embeddings/s, RSS) for each point of a settings sweep; --apply writes the best into the recipe',
    args: [recipeArg],
    options: [
      { flags: '-t, --target <target>', description: 'the llama-server target (default: the recipe\'s only one)' },
      { flags: '--sweep <setting=values...>', description: 'settings to try, e.g. --sweep ubatch-size=64,128,256 --sweep batch-size=128,256 (every combination)' },
      { flags: '--url <url>', description: 'measure a server already running there instead of starting the target\'s image' },
      { flags: '--image <ref>', description: 'the image to run (default <image.name>:<version>-<target>)' },
      { flags: '--objective <metric>', description: 'what decides the best: ttft_p50_ms, ttft_p95_ms, gen_tps, prompt_tps, embeddings_per_s, rss_bytes (default ttft_p50_ms; embeddings_per_s for an embedding server)' },
      { flags: '--requests <n>', description: 'requests per setting', default: '16' },
      { flags: '--concurrency <n>', description: 'requests in flight at once', default: '2' },
      { flags: '--max-tokens <n>', description: 'tokens generated per chat request', default: '32' },
      { flags: '-o, --out <file>', description: 'where the JSON result goes (default bench/results/<recipe>-<target>.json)' },
      { flags: '--apply', description: 'write the best point\'s settings into the recipe (only those fields change)' },
    ],
    examples: [
      'bake bench chat-llamacpp --target chat --sweep ubatch-size=64,128,256 --sweep batch-size=128,256',
      'bake bench chat-llamacpp --target embed --sweep ubatch-size=512,2048 --apply',
      'bake bench chat-llamacpp --target chat --url http://127.0.0.1:8080',
    ],
    async run(input) {
      const tune = await import('../tune/index.js');
      const o = input.opts;
      const recipe = await recipeOf(input);
      const sweep = tune.parseSweep((o.sweep as string[] | undefined) ?? []);
      if (o.apply && Object.keys(sweep).length === 0) throw new InputError('--apply writes the best of a sweep: give --sweep', { field: '--apply' });
      const n = (name: string): number => {
        const v = Number(o[name]);
        if (!Number.isInteger(v) || v < 1) throw new InputError(`--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${String(o[name])}: expected a positive integer`, { field: `--${name}` });
        return v;
      };
      const result = await tune.bench({
        recipe, target: o.target as string | undefined, sweep, url: o.url as string | undefined, image: o.image as string | undefined,
        objective: o.objective as string | undefined, requests: n('requests'), concurrency: n('concurrency'), maxTokens: n('maxTokens'),
        onEvent: (e) => {
          if (e.type === 'point') input.render.event({ type: 'log', message: `bench [${e.index + 1}/${e.total}] ${Object.entries(e.settings).map(([k, v]) => `${k}=${v}`).join(' ') || 'the recipe\'s settings'}` });
        },
      });
      const out = resolve(input.globals.project, (o.out as string | undefined) ?? join('bench', 'results', `${recipe.name}-${result.target}.json`));
      await mkdir(dirname(out), { recursive: true });
      await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
      let applied: Record<string, unknown> | undefined;
      const best = result.points.find((p) => p.best);
      if (o.apply && best) {
        const before = await tune.applySettings(recipe.file, result.target, best.settings);
        try {
          await loadRecipe(recipe.file, resolve(input.globals.project));
        } catch (err) {
          await writeFile(recipe.file, before);
          throw err;
        }
        applied = best.settings;
      }
      const text = [benchTable(result), `saved ${out}`, ...(applied ? [`applied to ${recipe.file}: ${Object.entries(applied).map(([k, v]) => `${k}: ${v}`).join(', ')}`] : [])].join('\n');
      return { value: { ...result, saved: out, ...(applied ? { applied } : {}) }, text };
    },
  },
  {
    name: 'doctor',
    description: 'check the Docker engine, registry, disk, Hub token and cache; exits non-zero when a check fails',
    options: [
      { flags: '--registry <host>', description: 'registry to check (host:port)' },
      { flags: '--daemonless', description: 'do not check for a Docker engine (builds with --output or --push need none)' },
    ],
    async run(input) {
      const { runDoctor } = await import('./doctor.js');
      return runDoctor(input);
    },
  },
  {
    name: 'inspect',
    description: 'show a recipe, a lock entry (<recipe>/<model>), a store artifact (sha256), an OCI layout, or a pushed image with its report and provenance',
    args: [{ name: 'what', description: 'recipe name, <recipe>/<model>, artifact digest or step key (12 or more hex, as bake prints them), oci:<dir>, or an image host/name:tag', required: true }],
    examples: ['bake inspect 127.0.0.1:5000/ml/demo:0.1.0-cpu   # gate summary, report and provenance artifacts'],
    async run(input) {
      const { inspect } = await import('./inspect.js');
      return inspect(input);
    },
  },
  {
    name: 'runtime-app',
    description: 'write bake\'s runtime app (bundle, onnxruntime, node) into a folder (the bake builder image runs it)',
    options: [{ flags: '-o, --out <dir>', description: 'folder standing for /opt/bake-runtime', default: '/opt/bake-runtime' }],
    async run(input) {
      const { writeRuntimeApp } = await import('../image/runtime-app.js');
      const digest = await writeRuntimeApp(resolve(input.opts.out as string), ['app', 'onnxruntime', 'node']);
      return { value: { out: input.opts.out, digest }, text: `wrote ${input.opts.out} (${digest.slice(0, 12)})` };
    },
  },
];
