// A multi-variant project for the build report's tests: stories260K (the shared real checkpoint) at three
// GGUF types and a generated BERT encoder at INT8 and FP16, all local (no Hub), in a temp folder with its
// own recipe and lock. `failing` gives the Q4_0 variant a KLD gate it cannot meet.
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bake } from './cli.js';
import { STORIES_EVAL, STORIES_HF } from './gguf-fixtures.js';
import { writeBertFolder } from './onnx-bert.js';

export interface ReportProject {
  dir: string;
  /** Runs bake in the project with a store of its own (`store` picks which; a new name is a fresh store). */
  run(args: string[], store?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  remove(): Promise<void>;
}

/** The variants: which model ids share a source (the charts draw one mark per variant). */
export const VARIANTS = { stories: ['stories-q4', 'stories-q5', 'stories-q8'], encoder: ['enc-int8', 'enc-fp16'] } as const;

export async function reportProject(opts: { failing?: boolean } = {}): Promise<ReportProject> {
  const dir = await mkdtemp(join(tmpdir(), 'bake-report-'));
  await mkdir(join(dir, 'recipes'));
  await mkdir(join(dir, 'models', 'stories'), { recursive: true });
  for (const f of await readdir(STORIES_HF)) if (f !== 'CONVERSION.txt') await copyFile(join(STORIES_HF, f), join(dir, 'models', 'stories', f));
  await copyFile(STORIES_EVAL, join(dir, 'models', 'eval.txt'));
  await writeBertFolder(join(dir, 'models', 'encoder'), { hidden: 64, layers: 1, heads: 2, intermediate: 128, seed: 5 });
  const gguf = (id: string, type: string, kld: number) => [
    `  - id: ${id}`, '    path: ../models/stories', `    quantize: { format: gguf, type: ${type} }`, `    verify: { max_kld: ${kld}, eval: ../models/eval.txt }`,
  ];
  const onnx = (id: string, format: string, cosine: number) => [
    `  - id: ${id}`, '    path: ../models/encoder', '    task: feature-extraction', `    quantize: { format: ${format} }`, `    verify: { min_cosine: ${cosine} }`,
  ];
  await writeFile(join(dir, 'recipes', 'multi.yaml'), [
    'description: stories260K at three GGUF types and a BERT encoder at INT8 and FP16',
    'image: { name: bake.local/multi, version: 1.0.0 }',
    'models:',
    // stories260K's rows (64, 172) take no K-quant block: these three types give three different files.
    ...gguf('stories-q4', 'Q4_0', opts.failing ? 0.00001 : 0.5),
    ...gguf('stories-q5', 'Q5_1', 0.5),
    ...gguf('stories-q8', 'Q8_0', 0.5),
    ...onnx('enc-int8', 'onnx-int8', 0.9),
    ...onnx('enc-fp16', 'onnx-fp16', 0.99),
    'targets:',
    `  chat: { base: scratch, server: { kind: none }, models: [${VARIANTS.stories.join(', ')}] }`,
    `  embed: { base: scratch, server: { kind: none }, models: [${VARIANTS.encoder.join(', ')}] }`,
    '',
  ].join('\n'));
  const run = (args: string[], store = 'store') => bake(['-C', dir, ...args], { cwd: dir, env: { BAKE_STORE: join(dir, store), HF_HUB_OFFLINE: '1', SOURCE_DATE_EPOCH: '1700000000' } });
  const locked = await run(['lock', 'multi']);
  if (locked.code !== 0) throw new Error(`bake lock multi failed: ${locked.stderr}`);
  return { dir, run, remove: () => rm(dir, { recursive: true, force: true }) };
}
