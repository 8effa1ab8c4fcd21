// safetensors reading (single, sharded, malformed) and the HF -> GGUF converter's structure and errors.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kvValue, readGguf, readTensorBytes } from '../../src/formats/gguf/index.js';
import { openCheckpoint, readSafetensorsHeader, readTensorF32, readTensorRaw } from '../../src/formats/safetensors/index.js';
import { convertHfToGguf, GGUF_TYPES, requantizeGguf, writeModel } from '../../src/quant/gguf/index.js';
import { ggufModelSource } from '../../src/quant/gguf/gguf-source.js';
import { InputError } from '../../src/util/errors.js';
import { encodeSafetensors, STORIES_HF, writeRandomLlama, type RandomLlamaShape, type StTensor } from '../support/gguf-fixtures.js';

let dir: string;
before(async () => { dir = await mkdtemp(join(tmpdir(), 'bake-gguf-convert-')); });
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

function f32bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

async function rejectsInput(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof InputError, `expected InputError, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  });
}

describe('safetensors reader', () => {
  test('reads stories260K: 47 F32 tensors with shapes and values', async () => {
    const f = await readSafetensorsHeader(join(STORIES_HF, 'model.safetensors'));
    assert.equal(f.tensors.size, 47);
    const emb = f.tensors.get('model.embed_tokens.weight')!;
    assert.deepEqual(emb.shape, [512, 64]);
    const values = await readTensorF32(emb);
    assert.equal(values.length, 512 * 64);
    assert.ok(values.some((v) => v !== 0));
  });

  test('F16 and BF16 tensors widen exactly to float32', async () => {
    const path = join(dir, 'half.safetensors');
    const h = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff]); // 1, -2, 2^-24, 65504
    const b = new Uint16Array([0x3f80, 0xc040]); // 1, -3
    await writeFile(path, encodeSafetensors([
      { name: 'h', dtype: 'F16', shape: [4], data: new Uint8Array(h.buffer) },
      { name: 'b', dtype: 'BF16', shape: [2], data: new Uint8Array(b.buffer) },
    ]));
    const f = await readSafetensorsHeader(path);
    assert.deepEqual([...(await readTensorF32(f.tensors.get('h')!))], [1, -2, 2 ** -24, 65504]);
    assert.deepEqual([...(await readTensorF32(f.tensors.get('b')!))], [1, -3]);
  });

  test('sharded checkpoints are read through model.safetensors.index.json', async () => {
    const d = join(dir, 'sharded');
    await writeRandomLlama(d, { embd: 64, ff: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: true }, 3, { shards: 3 });
    const ck = await openCheckpoint(d);
    assert.equal(ck.files.length, 3);
    assert.equal(ck.tensors.size, 1 + 2 * 9 + 1);
    const index = JSON.parse(await readFile(join(d, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    index.weight_map['model.norm.weight'] = '../../etc/passwd';
    await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify(index));
    await rejectsInput(openCheckpoint(d), /escapes the model folder/);
  });

  test('malformed headers give InputErrors naming the problem', async () => {
    const good = encodeSafetensors([
      { name: 'a', dtype: 'F32', shape: [2], data: f32bytes([1, 2]) },
      { name: 'b', dtype: 'F32', shape: [2], data: f32bytes([3, 4]) },
    ]);
    const path = join(dir, 'bad.safetensors');
    const check = async (bytes: Uint8Array, pattern: RegExp): Promise<void> => {
      await writeFile(path, bytes);
      await rejectsInput(readSafetensorsHeader(path), pattern);
    };
    await check(good.subarray(0, 5), /too short/);
    const lying = Buffer.from(good);
    lying.writeBigUInt64LE(BigInt(good.length), 0);
    await check(lying, /header length .* exceeds the file/);
    const huge = Buffer.from(good);
    huge.writeBigUInt64LE(2n ** 62n, 0);
    await check(huge, /header length/);
    await check(good.subarray(0, good.length - 4), /run past the data section/);
    const header = (h: unknown): Buffer => {
      const json = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([len, json, Buffer.alloc(16)]);
    };
    await check(header({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }), /needs 12 bytes but data_offsets span 8/);
    await check(header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }), /overlap/);
    await check(header({ a: { dtype: 'Q9', shape: [2], data_offsets: [0, 8] } }), /dtype "Q9"/);
    await check(header({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 8] } }), /shape/);
    await check(header({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }), /before begin/);
    await check(header([1, 2]), /not a JSON object/);
    const notJson = Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{{{{')]);
    await check(notJson, /not valid JSON/);
  });
});

describe('HF -> GGUF converter', () => {
  test('stories260K: metadata, names, shapes and the Q/K permutation', async () => {
    const out = join(dir, 'stories-f32.gguf');
    const r = await convertHfToGguf(STORIES_HF, out, { type: 'F32' });
    assert.equal(r.tensors, 47);
    assert.deepEqual(r.typeCounts, { F32: 47 });
    const g = await readGguf(out);
    assert.equal(kvValue(g, 'general.architecture'), 'llama');
    assert.equal(kvValue(g, 'llama.block_count'), 5);
    assert.equal(kvValue(g, 'llama.attention.head_count_kv'), 4);
    assert.equal(kvValue(g, 'llama.rope.dimension_count'), 8);
    assert.equal(kvValue(g, 'tokenizer.ggml.model'), 'llama');
    assert.equal(kvValue(g, 'tokenizer.ggml.bos_token_id'), 1);
    const tokens = kvValue(g, 'tokenizer.ggml.tokens') as { values: string[] };
    const types = kvValue(g, 'tokenizer.ggml.token_type') as { values: number[] };
    assert.equal(tokens.values.length, 512);
    assert.deepEqual([tokens.values[0], tokens.values[1], tokens.values[2], tokens.values[3]], ['<unk>', '<s>', '</s>', '<0x00>']);
    // <unk> is CONTROL, not UNKNOWN: tokenizer_config.json marks it special, and convert_hf_to_gguf.py lets
    // added_tokens_decoder's `special` win over the SentencePiece type.
    assert.deepEqual([types.values[0], types.values[1], types.values[3], types.values[300]], [3, 3, 6, 1]);
    assert.equal(g.tensors[0]!.name, 'output_norm.weight'); // llama.cpp's order: globals by name, then blocks
    const k = g.tensors.find((t) => t.name === 'blk.0.attn_k.weight')!;
    assert.deepEqual(k.dims, [64, 32]);
    // Q/K: GGUF row h*8 + 2i + j == HF row h*8 + 4j + i (heads of 8, rotate-half -> interleaved).
    const st = await readSafetensorsHeader(join(STORIES_HF, 'model.safetensors'));
    const hfK = await readTensorF32(st.tensors.get('model.layers.0.self_attn.k_proj.weight')!);
    const ggK = new Float32Array((await readTensorBytes(g, k, 64 * 32 * 4)).buffer);
    for (let h = 0; h < 4; h++) for (let i = 0; i < 4; i++) for (let j = 0; j < 2; j++) {
      const ours = ggK.subarray((h * 8 + 2 * i + j) * 64, (h * 8 + 2 * i + j + 1) * 64);
      const theirs = hfK.subarray((h * 8 + 4 * j + i) * 64, (h * 8 + 4 * j + i + 1) * 64);
      assert.deepEqual([...ours], [...theirs]);
    }
    const v = g.tensors.find((t) => t.name === 'blk.0.attn_v.weight')!;
    const hfV = await readTensorF32(st.tensors.get('model.layers.0.self_attn.v_proj.weight')!);
    assert.deepEqual(new Float32Array((await readTensorBytes(g, v, 64 * 32 * 4)).buffer), hfV);
  });

  test('MistralForCausalLM converts as the llama architecture (same names, same Q/K permutation)', async () => {
    const d = join(dir, 'mistral');
    await writeRandomLlama(d, { embd: 64, ff: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: false }, 8);
    const config = JSON.parse(await readFile(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(d, 'config.json'), JSON.stringify({ ...config, architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: null }));
    const out = join(dir, 'mistral.gguf');
    const r = await convertHfToGguf(d, out, { type: 'F16' });
    assert.deepEqual(r.typeCounts, { F32: 5, F16: 16 });
    const g = await readGguf(out);
    assert.equal(kvValue(g, 'general.architecture'), 'llama');
    assert.equal(kvValue(g, 'general.file_type'), 1);
    assert.ok(g.tensors.some((t) => t.name === 'output.weight'));
  });

  test('accepted types are listed', () => {
    for (const t of ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K', 'Q4_K_M', 'Q5_K_M']) assert.ok(GGUF_TYPES.includes(t), t);
  });

  test('bad input: unknown type, unknown architecture, missing tokenizer, missing weights, truncated weights', async () => {
    const out = join(dir, 'never.gguf');
    await rejectsInput(convertHfToGguf(STORIES_HF, out, { type: 'Q3_XL' }), /unknown GGUF type "Q3_XL"/);
    const d = join(dir, 'broken');
    await cp(STORIES_HF, d, { recursive: true });
    const config = JSON.parse(await readFile(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(d, 'config.json'), JSON.stringify({ ...config, architectures: ['GPTBigCodeForCausalLM'] }));
    await rejectsInput(convertHfToGguf(d, out, { type: 'F32' }), /architecture "GPTBigCodeForCausalLM" is not supported/);
    await writeFile(join(d, 'config.json'), JSON.stringify(config));
    await unlink(join(d, 'tokenizer.model'));
    await rejectsInput(convertHfToGguf(d, out, { type: 'F32' }), /no tokenizer.model or tokenizer.json/);
    await cp(join(STORIES_HF, 'tokenizer.model'), join(d, 'tokenizer.model'));
    await writeFile(join(d, 'tokenizer.model'), Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f]));
    await rejectsInput(convertHfToGguf(d, out, { type: 'F32' }), /not a valid SentencePiece model/);
    await cp(join(STORIES_HF, 'tokenizer.model'), join(d, 'tokenizer.model'));
    const weights = await readFile(join(STORIES_HF, 'model.safetensors'));
    await writeFile(join(d, 'model.safetensors'), weights.subarray(0, weights.length - 100));
    await rejectsInput(convertHfToGguf(d, out, { type: 'F32' }), /run past the data section/);
    await unlink(join(d, 'model.safetensors'));
    await rejectsInput(convertHfToGguf(d, out, { type: 'F32' }), /no model.safetensors/);
    await assert.rejects(readFile(out), /ENOENT/); // nothing half-written
  });
});

describe('the checkpoint is checked against config.json before anything is written', () => {
  const SMALL: RandomLlamaShape = { embd: 64, ff: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: false };
  let n = 0;

  /** A random checkpoint whose tensors (and config.json) were edited after writing. */
  async function edited(shape: RandomLlamaShape, edit: (ts: StTensor[]) => StTensor[], config: Record<string, unknown> = {}): Promise<string> {
    const d = join(dir, `checked-${n++}`);
    await writeRandomLlama(d, shape, 11);
    const f = await readSafetensorsHeader(join(d, 'model.safetensors'));
    const ts: StTensor[] = [];
    for (const [name, t] of f.tensors) ts.push({ name, dtype: 'F32', shape: [...t.shape], data: await readTensorRaw(t) });
    await writeFile(join(d, 'model.safetensors'), encodeSafetensors(edit(ts)));
    const c = JSON.parse(await readFile(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(d, 'config.json'), JSON.stringify({ ...c, ...config }));
    return d;
  }
  const zeros = (name: string, shape: number[]): StTensor => ({ name, dtype: 'F32', shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 4) });

  async function refused(d: string, pattern: RegExp, file = 'model.safetensors'): Promise<void> {
    const out = join(d, 'out.gguf');
    await assert.rejects(convertHfToGguf(d, out, { type: 'Q8_0' }), (err: unknown) => {
      assert.ok(err instanceof InputError, `expected InputError, got ${String(err)}`);
      assert.equal(err.exit, 'usage');
      assert.match(err.message, pattern);
      assert.equal(err.file, join(d, file));
      return true;
    });
    await assert.rejects(readFile(out), /ENOENT/);
    assert.deepEqual((await readdir(d)).filter((f) => f.includes('gguf')), [], 'not even a temp file');
  }

  test('a missing tensor is refused, naming it and the checkpoint file', async () => {
    const d = await edited(SMALL, (ts) => ts.filter((t) => t.name !== 'model.layers.1.mlp.up_proj.weight'));
    await refused(d, /model\.safetensors does not match config\.json[^]*missing: model\.layers\.1\.mlp\.up_proj\.weight/);
  });

  test('a whole missing layer is listed shortly; a sharded checkpoint is named by its index', async () => {
    const d = join(dir, 'checked-sharded');
    await writeRandomLlama(d, SMALL, 12, { shards: 2 });
    const c = JSON.parse(await readFile(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(d, 'config.json'), JSON.stringify({ ...c, num_hidden_layers: 3 }));
    await refused(d, /9 missing: model\.layers\.2\.input_layernorm\.weight, [^]* and 1 more/, 'model.safetensors.index.json');
  });

  test('a config.json claiming more layers than the checkpoint has tensors is refused without listing them all', { timeout: 60_000 }, async () => {
    const d = await edited(SMALL, (ts) => ts, { num_hidden_layers: 1_000_000_000 });
    await refused(d, /config\.json says 1000000000 layers but model\.safetensors holds 21 tensors/, 'config.json');
  });

  test('tensors config.json does not call for are refused (a layer past num_hidden_layers, an unknown name); rotary caches are dropped', async () => {
    const d = await edited(SMALL, (ts) => [
      ...ts,
      zeros('model.layers.2.input_layernorm.weight', [64]),
      zeros('model.layers.0.self_attn.rotary_emb.inv_freq', [8]),
      zeros('model.vision_tower.proj.weight', [4, 4]),
    ]);
    await refused(d, /unexpected: model\.layers\.2\.input_layernorm\.weight, model\.vision_tower\.proj\.weight$/m);
    const ok = await edited(SMALL, (ts) => [...ts, zeros('model.layers.0.self_attn.rotary_emb.inv_freq', [8])]);
    const r = await convertHfToGguf(ok, join(dir, 'rotary.gguf'), { type: 'F32' });
    assert.equal(r.tensors, 21);
  });

  test('shapes are checked against hidden_size, intermediate_size, heads, kv heads and vocab_size', async () => {
    const kv = await edited(SMALL, (ts) => ts.map((t) => (t.name === 'model.layers.0.self_attn.k_proj.weight' ? zeros(t.name, [64, 64]) : t)));
    await refused(kv, /model\.layers\.0\.self_attn\.k_proj\.weight is \[64, 64\] where config\.json implies \[32, 64\]/);
    const ff = await edited(SMALL, (ts) => ts, { intermediate_size: 256 });
    await refused(ff, /model\.layers\.0\.mlp\.down_proj\.weight is \[64, 128\] where config\.json implies \[64, 256\]/);
    const vocab = await edited(SMALL, (ts) => ts, { vocab_size: 600 });
    await refused(vocab, /model\.embed_tokens\.weight is \[512, 64\] where config\.json implies \[600, 64\]/);
    const heads = await edited(SMALL, (ts) => ts, { num_key_value_heads: 4 });
    await refused(heads, /k_proj\.weight is \[32, 64\] where config\.json implies \[64, 64\]/);
  });

  test('lm_head.weight: required unless tie_word_embeddings; allowed when tied', async () => {
    const untied = await edited(SMALL, (ts) => ts.filter((t) => t.name !== 'lm_head.weight'));
    await refused(untied, /missing: lm_head\.weight/);
    const noKey = await edited(SMALL, (ts) => ts.filter((t) => t.name !== 'lm_head.weight'), { tie_word_embeddings: undefined });
    await refused(noKey, /missing: lm_head\.weight/);
    const tied = await edited({ ...SMALL, tied: true }, (ts) => [...ts, zeros('lm_head.weight', [512, 64])]);
    const g = await readGguf((await convertHfToGguf(tied, join(dir, 'tied-head.gguf'), { type: 'F32' })).outFile);
    assert.ok(g.tensors.some((t) => t.name === 'output.weight'));
  });

  test('attention biases: always for qwen2, with attention_bias for llama (q, k, v and o)', async () => {
    const qwen = await edited({ ...SMALL, arch: 'qwen2' }, (ts) => ts.filter((t) => t.name !== 'model.layers.1.self_attn.q_proj.bias'));
    await refused(qwen, /missing: model\.layers\.1\.self_attn\.q_proj\.bias/);
    const llamaNoBias = await edited(SMALL, (ts) => ts, { attention_bias: true });
    await refused(llamaNoBias, /8 missing: model\.layers\.0\.self_attn\.q_proj\.bias, model\.layers\.0\.self_attn\.k_proj\.bias, model\.layers\.0\.self_attn\.v_proj\.bias, model\.layers\.0\.self_attn\.o_proj\.bias/);
    const biases = (ts: StTensor[]): StTensor[] => [...ts, ...[0, 1].flatMap((l) => [
      zeros(`model.layers.${l}.self_attn.q_proj.bias`, [64]), zeros(`model.layers.${l}.self_attn.k_proj.bias`, [32]),
      zeros(`model.layers.${l}.self_attn.v_proj.bias`, [32]), zeros(`model.layers.${l}.self_attn.o_proj.bias`, [64]),
    ])];
    const unasked = await edited(SMALL, biases);
    await refused(unasked, /8 unexpected: model\.layers\.0\.self_attn\.q_proj\.bias/);
    const llamaBias = await edited(SMALL, biases, { attention_bias: true });
    const g = await readGguf((await convertHfToGguf(llamaBias, join(dir, 'llama-bias.gguf'), { type: 'F32' })).outFile);
    assert.deepEqual(g.tensors.filter((t) => t.name.startsWith('blk.1.') && t.name.endsWith('.bias')).map((t) => t.name).sort(),
      ['blk.1.attn_k.bias', 'blk.1.attn_output.bias', 'blk.1.attn_q.bias', 'blk.1.attn_v.bias']);
  });
});

describe('general.name, as convert_hf_to_gguf.py chooses it', () => {
  /** general.name of stories260K converted from a copy in `folder`, with config.json keys and a README.md. */
  async function nameOf(folder: string, opts: { config?: Record<string, unknown>; readme?: string; folderName?: string } = {}): Promise<string> {
    const d = join(dir, 'named', folder);
    await rm(d, { recursive: true, force: true });
    await cp(STORIES_HF, d, { recursive: true });
    const config = JSON.parse(await readFile(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(d, 'config.json'), JSON.stringify({ ...config, ...opts.config }));
    if (opts.readme !== undefined) await writeFile(join(d, 'README.md'), opts.readme);
    const out = join(dir, 'named.gguf');
    await convertHfToGguf(d, out, { type: 'F32', folderName: opts.folderName });
    return kvValue(await readGguf(out), 'general.name') as string;
  }

  test('the folder name, as a title (gguf-py id_to_title): words split at dashes, lower-case words capitalised except versions and numbers', async () => {
    assert.equal(await nameOf('Mixtral-8x7B-Instruct-v0.1'), 'Mixtral 8x7B Instruct v0.1');
    assert.equal(await nameOf('src', { folderName: 'hermes-2-pro-llama-3-8b-DPO' }), 'Hermes 2 Pro Llama 3 8b DPO');
    assert.equal(await nameOf('src', { folderName: 'TinyLlama-1.1B-Chat-v1.0' }), 'TinyLlama 1.1B Chat v1.0');
  });

  test('config.json _name_or_path when it is a Hub id, not when it is a path', async () => {
    assert.equal(await nameOf('src', { folderName: 'x', config: { _name_or_path: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0' } }), 'TinyLlama 1.1B Chat v1.0');
    assert.equal(await nameOf('src', { folderName: 'stories-260k', config: { _name_or_path: '/home/me/checkpoints/run-7' } }), 'Stories 260k');
  });

  test('the model card front matter (name, then model_name) wins; a card without one, or with bad YAML, is ignored', async () => {
    const card = (yaml: string) => `---\n${yaml}\n---\n# A model\n\nText.\n`;
    assert.equal(await nameOf('src', { folderName: 'x', readme: card('model_name: Stories 260K (F32)\nlicense: mit'), config: { _name_or_path: 'a/b' } }), 'Stories 260K (F32)');
    assert.equal(await nameOf('src', { folderName: 'x', readme: card('name: first\nmodel_name: second') }), 'first');
    assert.equal(await nameOf('src', { folderName: 'my-model', readme: '# no front matter\n' }), 'My Model');
    assert.equal(await nameOf('src', { folderName: 'my-model', readme: card('model_name: [unclosed') }), 'My Model');
    assert.equal(await nameOf('src', { folderName: 'my-model', readme: card('model_name: 42') }), 'My Model');
  });

  test('the folder name a recipe model stands for: the Hub repo name or the local folder, never where bake keeps its copy', async () => {
    const { modelFolderName } = await import('../../src/convert/model-name.js');
    assert.equal(modelFolderName({ id: 'chat', repo: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0' }), 'TinyLlama-1.1B-Chat-v1.0');
    assert.equal(modelFolderName({ id: 'm', path: '../models/stories260K/' }), 'stories260K');
    assert.equal(modelFolderName({ id: 'm', path: 'npm:@acme/models/llama-small' }), 'llama-small');
    assert.equal(modelFolderName({ id: 'm', path: '..' }), 'm');
  });
});

describe('Qwen2 with a byte-level BPE tokenizer', () => {
  test('tokenizer.json gives gpt2 tokens, types, merges and the qwen2 pre-tokenizer; Q/K biases are kept unpermuted', async () => {
    const { writeBpeTokenizer } = await import('../support/gguf-fixtures.js');
    const d = join(dir, 'qwen2');
    await writeRandomLlama(d, { embd: 64, ff: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 300, tied: true, arch: 'qwen2' }, 5);
    await writeBpeTokenizer(d, 'qwen2', 300);
    const out = join(dir, 'qwen2.gguf');
    await convertHfToGguf(d, out, { type: 'F32' });
    const g = await readGguf(out);
    assert.equal(kvValue(g, 'general.architecture'), 'qwen2');
    assert.equal(kvValue(g, 'qwen2.block_count'), 2);
    assert.equal(kvValue(g, 'tokenizer.ggml.model'), 'gpt2');
    assert.equal(kvValue(g, 'tokenizer.ggml.pre'), 'qwen2');
    const tokens = (kvValue(g, 'tokenizer.ggml.tokens') as { values: string[] }).values;
    const types = (kvValue(g, 'tokenizer.ggml.token_type') as { values: number[] }).values;
    const merges = (kvValue(g, 'tokenizer.ggml.merges') as { values: string[] }).values;
    assert.equal(tokens.length, 300);
    assert.equal(tokens[298], '<|endoftext|>');
    assert.equal(types[298], 3);
    assert.equal(types[0], 1);
    assert.equal(tokens[270], '[PAD270]'); // ids with no token are padded as UNUSED
    assert.equal(types[270], 5);
    assert.equal(merges[0], 't h');
    assert.equal(kvValue(g, 'tokenizer.ggml.eos_token_id'), 298);
    assert.equal(kvValue(g, 'tokenizer.ggml.add_bos_token'), false);
    const bias = g.tensors.find((t) => t.name === 'blk.0.attn_q.bias')!;
    const st = await readSafetensorsHeader(join(d, 'model.safetensors'));
    const hf = await readTensorF32(st.tensors.get('model.layers.0.self_attn.q_proj.bias')!);
    assert.deepEqual(new Float32Array((await readTensorBytes(g, bias, 64 * 4)).buffer), hf);
  });

  test('an unrecognised pre-tokenizer is a clear error', async () => {
    const d = join(dir, 'qwen2');
    const tj = JSON.parse(await readFile(join(d, 'tokenizer.json'), 'utf8')) as { pre_tokenizer: { pretokenizers: { pattern?: { Regex: string } }[] } };
    tj.pre_tokenizer.pretokenizers[0]!.pattern = { Regex: '\\w+' };
    await writeFile(join(d, 'tokenizer.json'), JSON.stringify(tj));
    await rejectsInput(convertHfToGguf(d, join(dir, 'never2.gguf'), { type: 'F32' }), /unrecognised pre-tokenizer "\\\\w\+"/);
  });
});

describe('requantizeGguf input checks', () => {
  test('quantized input, a non-GGUF file and an unknown type are clear errors; F16 in -> F32 out widens exactly', async () => {
    const q8 = join(dir, 'stories-q8.gguf');
    await convertHfToGguf(STORIES_HF, q8, { type: 'Q8_0' });
    await rejectsInput(requantizeGguf(q8, join(dir, 'never3.gguf'), { type: 'Q4_0' }), /tensor token_embd.weight is Q8_0/);
    await rejectsInput(requantizeGguf(join(STORIES_HF, 'config.json'), join(dir, 'never3.gguf'), { type: 'Q4_0' }), /bad magic/);
    await rejectsInput(requantizeGguf(q8, join(dir, 'never3.gguf'), { type: 'IQ2_XXS' }), /unknown GGUF type/);
    const f16 = join(dir, 'stories-f16.gguf');
    await convertHfToGguf(STORIES_HF, f16, { type: 'F16' });
    const back = join(dir, 'stories-f16-f32.gguf');
    const r = await requantizeGguf(f16, back, { type: 'F32' });
    assert.deepEqual(r.typeCounts, { F32: 47 });
    const g = await readGguf(back);
    assert.equal(kvValue(g, 'general.file_type'), 0);
    const t = g.tensors.find((x) => x.name === 'blk.2.ffn_up.weight')!;
    const values = new Float32Array((await readTensorBytes(g, t, 64 * 172 * 4)).buffer);
    const st = await readSafetensorsHeader(join(STORIES_HF, 'model.safetensors'));
    const orig = await readTensorF32(st.tensors.get('model.layers.2.mlp.up_proj.weight')!);
    let maxRel = 0;
    for (let i = 0; i < orig.length; i++) maxRel = Math.max(maxRel, Math.abs(values[i]! - orig[i]!) / Math.max(Math.abs(orig[i]!), 1e-3));
    assert.ok(maxRel < 1e-3 && maxRel > 0, `F16 round trip relative error ${maxRel}`);
  });
});

describe('a failure while tensors are in flight', () => {
  test('a read failing mid-file rejects, stops the workers and leaves neither the output nor a temp file', async () => {
    const hf = join(dir, 'inflight-hf');
    await writeRandomLlama(hf, { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: false }, 17);
    const f32 = join(dir, 'inflight-f32.gguf');
    await convertHfToGguf(hf, f32, { type: 'F32' });
    const source = await ggufModelSource(f32);
    // Tensors big enough for the worker pool; the sixth read fails after earlier ones were quantized and written.
    // (Read through readF32, as the converter's computed tensors are: without `stored`, the file path.)
    let reads = 0;
    const failing = {
      ...source,
      tensors: source.tensors.map(({ stored: _stored, ...t }) => ({
        ...t,
        readF32: async (into?: Float32Array) => {
          if (++reads === 6) throw new Error('disk went away');
          return t.readF32(into);
        },
      })),
    };
    const outDir = join(dir, 'inflight-out');
    await mkdir(outDir);
    await assert.rejects(writeModel(failing, join(outDir, 'model.gguf'), { type: 'Q4_K_M', threads: 2 }), /disk went away/);
    assert.ok(reads >= 6);
    assert.deepEqual(await readdir(outDir), []);
  });
});
