// The checkpoint's tensors against what its config.json calls for, checked before anything is written: a
// missing, extra or mis-shaped tensor means an incomplete download or a config.json of another model, and
// converting anyway would give a GGUF that loads into garbage (or not at all) with exit 0.
import { basename, join } from 'node:path';
import type { Checkpoint } from '../formats/safetensors/index.js';
import { InputError } from '../util/errors.js';
import type { ExpectedTensor } from './architectures/index.js';

/** How many names of each kind a message lists before "and N more". */
const LISTED = 8;

export interface TensorSetContext {
  /** config.json's path and `architectures[0]`, for the message. */
  configFile: string;
  hfArchitecture: string;
  /** num_hidden_layers: checked first, so an absurd count is refused before any list is made from it. */
  nLayer: number;
  /** The config.json keys that size the tensors, for the message (default: a LLaMA-style decoder's). */
  sizedBy?: { layers: string; all: string };
  /** The tensors config.json calls for (Architecture.expectedTensors). */
  expected(): Map<string, ExpectedTensor>;
  /** True for tensors the converter drops on purpose (rotary caches): neither expected nor unexpected. */
  dropped(hfName: string): boolean;
}

/** Throws one InputError listing every missing, unexpected and mis-shaped tensor; returns when all match. */
export function checkTensorSet(checkpoint: Checkpoint, ctx: TensorSetContext): void {
  const file = checkpoint.index ?? checkpoint.files[0]?.path ?? join(checkpoint.dir, 'model.safetensors');
  // Each layer holds several tensors, so more layers than tensors cannot match.
  if (ctx.nLayer > checkpoint.tensors.size) {
    throw new InputError(`${basename(ctx.configFile)} says ${ctx.nLayer} layers but ${basename(file)} holds ${checkpoint.tensors.size} tensors`, {
      file: ctx.configFile, field: ctx.sizedBy?.layers ?? 'num_hidden_layers', hint: 'the download is incomplete or config.json belongs to another model',
    });
  }
  const expected = ctx.expected();
  const missing: string[] = [];
  const misShaped: string[] = [];
  for (const [name, want] of expected) {
    const t = checkpoint.tensors.get(name);
    if (!t) {
      if (!want.optional) missing.push(name);
      continue;
    }
    if (t.shape.length !== want.shape.length || t.shape.some((d, i) => d !== want.shape[i])) {
      const where = checkpoint.index ? ` (${basename(t.file)})` : '';
      misShaped.push(`${name}${where} is [${t.shape.join(', ')}] where config.json implies [${want.shape.join(', ')}]`);
    }
  }
  const unexpected = [...checkpoint.tensors.keys()].filter((name) => !expected.has(name) && !ctx.dropped(name));
  if (missing.length + unexpected.length + misShaped.length === 0) return;

  const lines: string[] = [];
  if (missing.length) lines.push(`${counted(missing.length, 'missing')}: ${listed(missing)}`);
  if (unexpected.length) lines.push(`${counted(unexpected.length, 'unexpected')}: ${listed(unexpected)}`);
  lines.push(...misShaped.slice(0, LISTED));
  if (misShaped.length > LISTED) lines.push(`and ${misShaped.length - LISTED} more mis-shaped`);
  throw new InputError(`${basename(file)} does not match ${basename(ctx.configFile)} (${ctx.hfArchitecture}):\n  ${lines.join('\n  ')}`, {
    file,
    expected: `the tensors ${basename(ctx.configFile)} describes (${ctx.sizedBy?.all ?? 'layer count, hidden_size, intermediate_size, heads, kv heads, vocab_size, biases, tied embeddings'})`,
    hint: 'the download is incomplete or config.json belongs to another model: lock all the checkpoint files (every shard) of one model',
  });
}

function counted(n: number, what: string): string {
  return n === 1 ? what : `${n} ${what}`;
}

function listed(names: string[]): string {
  const more = names.length - LISTED;
  return names.slice(0, LISTED).join(', ') + (more > 0 ? ` and ${more} more` : '');
}
