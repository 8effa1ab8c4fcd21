// Real text through the model's own tokenizer (transformers.js, offline), as feeds for onnxruntime.
import { access } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InputError } from '../../util/errors.js';
import type { Feeds } from './inputs.js';

interface TokenizerOutput { [k: string]: { data: ArrayLike<bigint | number>; dims: number[] } }
type Tokenizer = (text: string, opts: { truncation: boolean; max_length: number }) => TokenizerOutput;

/** transformers.js reads one global folder: loads take turns, or two at once read each other's files. */
let loading: Promise<unknown> = Promise.resolve();

/** Loads the tokenizer of the model folder `modelDir` with remote models off. */
export function loadTokenizer(modelDir: string): Promise<Tokenizer> {
  const next = loading.then(() => loadTokenizerNow(modelDir));
  loading = next.catch(() => {});
  return next;
}

async function loadTokenizerNow(modelDir: string): Promise<Tokenizer> {
  try {
    await access(join(modelDir, 'tokenizer.json'));
  } catch {
    throw new InputError(`${modelDir} has no tokenizer.json, needed to verify a text model on real text`, {
      file: join(modelDir, 'tokenizer.json'), expected: 'tokenizer.json (and tokenizer_config.json) beside config.json', hint: 'add the tokenizer files to the model\'s files list',
    });
  }
  const { AutoTokenizer, env } = await import('@huggingface/transformers');
  // transformers.js resolves local models against one global folder; set it for this call and put it back.
  const saved = { remote: env.allowRemoteModels, local: env.allowLocalModels, path: env.localModelPath };
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = dirname(modelDir) + '/';
  try {
    return (await AutoTokenizer.from_pretrained(basename(modelDir))) as unknown as Tokenizer;
  } finally {
    env.allowRemoteModels = saved.remote;
    env.allowLocalModels = saved.local;
    env.localModelPath = saved.path;
  }
}

/** One feed set per text (batch 1), with the inputs the model declares (token_type_ids zero when asked). */
export async function textFeeds(modelDir: string, texts: string[], inputNames: string[], maxLength = 128): Promise<Feeds[]> {
  const tokenizer = await loadTokenizer(modelDir);
  return texts.map((text) => {
    const enc = tokenizer(text, { truncation: true, max_length: maxLength });
    const ids = enc.input_ids!;
    const feeds: Feeds = {};
    for (const name of inputNames) {
      const src = enc[name];
      const data = src ? BigInt64Array.from(Array.from(src.data, (x) => BigInt(x))) : name === 'token_type_ids' ? new BigInt64Array(ids.data.length) : undefined;
      if (!data) throw new InputError(`text model input ${name} is not something the tokenizer gives`, { expected: 'input_ids, attention_mask, token_type_ids', hint: 'verify this model with generated inputs instead' });
      feeds[name] = new ort.Tensor('int64', data, src?.dims ?? ids.dims);
    }
    return feeds;
  });
}
