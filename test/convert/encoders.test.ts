// BERT-family encoders -> GGUF (bert, nomic-bert) as convert_hf_to_gguf.py writes them: metadata, the
// WordPiece vocabulary in phantom-space form, tensor names and values, and the refusals (tensor set,
// config variants llama.cpp does not compute, pooling files). llama.cpp running the result against
// onnxruntime is test/verify/llama/embedding.test.ts.
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kvValue, readGguf, readTensorBytes, type GgufArray, type GgufFile } from '../../src/formats/gguf/index.js';
import { convertHfToGguf } from '../../src/quant/gguf/index.js';
import { InputError } from '../../src/util/errors.js';
import { encodeSafetensors, writeRandomLlama, type StTensor } from '../support/gguf-fixtures.js';
import { encoderWeights, writeEncoderModel, type EncoderOptions } from '../support/embedding-models.js';
import { bertVocab as buildVocab } from '../support/onnx-bert.js';

let dir: string;
const BERT: EncoderOptions = { arch: 'bert', onnx: false };
const NOMIC: EncoderOptions = { arch: 'nomic-bert', onnx: false };
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-encoders-'));
  await writeEncoderModel(join(dir, 'bert'), BERT);
  await writeEncoderModel(join(dir, 'nomic'), NOMIC);
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

async function convert(src: string, type = 'F32'): Promise<GgufFile & { path: string }> {
  const out = join(dir, `${src.split('/').pop()}-${type}-${Math.random().toString(36).slice(2)}.gguf`);
  await convertHfToGguf(src, out, { type });
  return { ...(await readGguf(out)), path: out };
}

async function tensorF32(g: GgufFile & { path: string }, name: string): Promise<Float32Array> {
  const info = g.tensors.find((t) => t.name === name);
  assert.ok(info, `no tensor ${name}`);
  const { open } = await import('node:fs/promises');
  const fh = await open(g.path, 'r');
  try {
    const bytes = await readTensorBytes(g, info, info.dims.reduce((a, b) => a * b, 1) * 4, fh);
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  } finally {
    await fh.close();
  }
}

async function rejects(p: Promise<unknown>, check: (e: InputError) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected an InputError, got ${String(e)}`);
    check(e);
    return true;
  });
}

async function copyModel(from: string, name: string): Promise<string> {
  const to = join(dir, name);
  await cp(from, to, { recursive: true });
  return to;
}

async function editJson(file: string, edit: (j: Record<string, unknown>) => void): Promise<void> {
  const j = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(j);
  await writeFile(file, JSON.stringify(j));
}

describe('bert', () => {
  test('metadata: encoder hyper-parameters, non-causal, pooling from modules.json, WordPiece vocabulary', async () => {
    const g = await convert(join(dir, 'bert'));
    const kv = (k: string) => kvValue(g, k);
    assert.equal(kv('general.architecture'), 'bert');
    assert.equal(kv('bert.block_count'), 2);
    assert.equal(kv('bert.context_length'), 512);
    assert.equal(kv('bert.embedding_length'), 64);
    assert.equal(kv('bert.feed_forward_length'), 128);
    assert.equal(kv('bert.attention.head_count'), 4);
    assert.ok(Math.abs((kv('bert.attention.layer_norm_epsilon') as number) - 1e-12) < 1e-18);
    assert.equal(kv('bert.attention.causal'), false);
    assert.equal(kv('bert.pooling_type'), 2, 'CLS pooling (1_Pooling/config.json)');
    assert.equal(kv('tokenizer.ggml.model'), 'bert');
    assert.equal(kv('tokenizer.ggml.token_type_count'), 2);
    const vocab = buildVocab();
    const tokens = (kv('tokenizer.ggml.tokens') as GgufArray).values as string[];
    const types = (kv('tokenizer.ggml.token_type') as GgufArray).values as number[];
    assert.equal(tokens.length, vocab.length);
    // Phantom space: control tokens as they are, word starts get U+2581, "##" continuations lose it.
    assert.deepEqual(tokens.slice(0, 5), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
    assert.deepEqual(types.slice(0, 5), [3, 3, 3, 3, 3]);
    assert.equal(tokens[vocab.indexOf('the')], '\u2581the');
    assert.equal(tokens[vocab.indexOf('##s')], 's');
    assert.equal(types[vocab.indexOf('the')], 1);
    // SpecialVocab: CLS stands for BOS and SEP for EOS; TemplateProcessing [CLS] $A [SEP] adds both.
    assert.equal(kv('tokenizer.ggml.bos_token_id'), 2);
    assert.equal(kv('tokenizer.ggml.eos_token_id'), 3);
    assert.equal(kv('tokenizer.ggml.seperator_token_id'), 3);
    assert.equal(kv('tokenizer.ggml.unknown_token_id'), 1);
    assert.equal(kv('tokenizer.ggml.padding_token_id'), 0);
    assert.equal(kv('tokenizer.ggml.mask_token_id'), 4);
    assert.equal(kv('tokenizer.ggml.add_bos_token'), true);
    assert.equal(kv('tokenizer.ggml.add_eos_token'), true);
    assert.equal(kv('tokenizer.ggml.add_sep_token'), false);
    assert.equal(kv('tokenizer.ggml.normalizer.lowercase'), true, 'llama.cpp lowercases WPM input only when told');
    assert.equal(kv('tokenizer.ggml.cls_token_id'), undefined, 'gguf-py has no writer for a cls id');
  });

  test('tensors: llama.cpp names, reversed dims, values as stored; the pooler is dropped', async () => {
    const g = await convert(join(dir, 'bert'));
    const names = g.tensors.map((t) => t.name);
    assert.equal(names.length, 5 + 2 * 16);
    for (const n of ['token_embd.weight', 'position_embd.weight', 'token_types.weight', 'token_embd_norm.weight', 'token_embd_norm.bias',
      'blk.1.attn_q.weight', 'blk.1.attn_k.bias', 'blk.1.attn_v.weight', 'blk.1.attn_output.bias', 'blk.1.attn_output_norm.weight',
      'blk.1.ffn_up.weight', 'blk.1.ffn_down.bias', 'blk.1.layer_output_norm.bias']) assert.ok(names.includes(n), n);
    assert.ok(!names.some((n) => n.includes('pooler')));
    assert.deepEqual(g.tensors.find((t) => t.name === 'blk.0.ffn_up.weight')!.dims, [64, 128]);
    const w = encoderWeights(BERT);
    assert.deepEqual(await tensorF32(g, 'blk.1.ffn_down.weight'), w.get('encoder.layer.1.output.dense.weight')!.data);
    assert.deepEqual(await tensorF32(g, 'position_embd.weight'), w.get('embeddings.position_embeddings.weight')!.data);
  });

  test('F16: 2-D weights in F16, norms, biases, positions and token types stay F32', async () => {
    const g = await convert(join(dir, 'bert'), 'F16');
    const type = (n: string) => g.tensors.find((t) => t.name === n)!.type;
    assert.equal(type('blk.0.attn_q.weight'), 1);
    assert.equal(type('token_embd.weight'), 1);
    for (const n of ['position_embd.weight', 'token_types.weight', 'token_embd_norm.weight', 'blk.0.attn_q.bias']) assert.equal(type(n), 0, n);
  });

  test('a BertForMaskedLM checkpoint (bert. prefix, gamma/beta, MLM head) converts to the same tensors', async () => {
    const d = await copyModel(join(dir, 'bert'), 'bert-mlm');
    const w = encoderWeights(BERT);
    const tensors: StTensor[] = [];
    for (const [name, t] of w) {
      const renamed = name.endsWith('LayerNorm.weight') ? name.replace(/weight$/, 'gamma') : name.endsWith('LayerNorm.bias') ? name.replace(/bias$/, 'beta') : name;
      tensors.push({ name: `bert.${renamed}`, dtype: 'F32', shape: t.shape, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) });
    }
    tensors.push({ name: 'cls.predictions.bias', dtype: 'F32', shape: [4], data: new Uint8Array(16) });
    tensors.push({ name: 'bert.embeddings.position_ids', dtype: 'I64' as StTensor['dtype'], shape: [1, 2], data: new Uint8Array(16) });
    await writeFile(join(d, 'model.safetensors'), encodeSafetensors(tensors));
    await editJson(join(d, 'config.json'), (c) => { c.architectures = ['BertForMaskedLM']; });
    const a = await convert(join(dir, 'bert'));
    const b = await convert(d);
    assert.deepEqual(b.tensors.map((t) => t.name).sort(), a.tensors.map((t) => t.name).sort());
    assert.deepEqual(await tensorF32(b, 'blk.0.attn_output_norm.weight'), await tensorF32(a, 'blk.0.attn_output_norm.weight'));
  });

  test('refused: another activation, relative positions, a tokenizer that is not WordPiece', async () => {
    const act = await copyModel(join(dir, 'bert'), 'bert-relu');
    await editJson(join(act, 'config.json'), (c) => { c.hidden_act = 'relu'; });
    await rejects(convert(act), (e) => { assert.equal(e.field, 'hidden_act'); assert.match(e.message, /GELU/); });
    const rel = await copyModel(join(dir, 'bert'), 'bert-rel');
    await editJson(join(rel, 'config.json'), (c) => { c.position_embedding_type = 'relative_key'; });
    await rejects(convert(rel), (e) => assert.equal(e.field, 'position_embedding_type'));
    const uni = await copyModel(join(dir, 'bert'), 'bert-unigram');
    await editJson(join(uni, 'tokenizer.json'), (t) => { (t.model as Record<string, unknown>).type = 'Unigram'; });
    await rejects(convert(uni), (e) => { assert.equal(e.field, 'model.type'); assert.match(e.hint ?? '', /Unigram/); });
  });

  test('pooling files: a module path leaving the folder and a pooling llama.cpp lacks are refused; no modules.json writes none', async () => {
    const esc = await copyModel(join(dir, 'bert'), 'bert-escape');
    await writeFile(join(esc, 'modules.json'), JSON.stringify([{ idx: 1, path: '../../etc', type: 'sentence_transformers.models.Pooling' }]));
    await rejects(convert(esc), (e) => assert.match(e.message, /leaves the model folder/));
    const max = await copyModel(join(dir, 'bert'), 'bert-max');
    await writeFile(join(max, '1_Pooling', 'config.json'), JSON.stringify({ pooling_mode_max_tokens: true }));
    await rejects(convert(max), (e) => assert.match(e.message, /pooling llama\.cpp does not have/));
    const none = await copyModel(join(dir, 'bert'), 'bert-nopool');
    await rm(join(none, 'modules.json'));
    const g = await convert(none);
    assert.equal(kvValue(g, 'bert.pooling_type'), undefined);
    assert.equal(kvValue(g, 'bert.attention.causal'), false);
  });
});

describe('nomic-bert', () => {
  test('metadata: trained context 2048, rotary base, mean pooling, vocabulary padded to 64 with unused tokens', async () => {
    const g = await convert(join(dir, 'nomic'));
    const kv = (k: string) => kvValue(g, k);
    assert.equal(kv('general.architecture'), 'nomic-bert');
    assert.equal(kv('nomic-bert.context_length'), 2048, 'n_positions 8192 with max_trained_positions 2048 is written as 2048');
    assert.equal(kv('nomic-bert.embedding_length'), 128);
    assert.equal(kv('nomic-bert.feed_forward_length'), 256);
    assert.equal(kv('nomic-bert.rope.freq_base'), 1000);
    assert.equal(kv('nomic-bert.pooling_type'), 1);
    assert.equal(kv('nomic-bert.attention.causal'), false);
    const tokens = (kv('tokenizer.ggml.tokens') as GgufArray).values as string[];
    const types = (kv('tokenizer.ggml.token_type') as GgufArray).values as number[];
    const real = buildVocab().length;
    assert.equal(tokens.length % 64, 0);
    assert.ok(tokens.length > real);
    assert.equal(tokens[real], `\u2581[PAD${real}]`);
    assert.equal(types[real], 5);
  });

  test('tensors: fused attn_qkv, fc11 -> ffn_up and fc12 -> ffn_gate (SwiGLU), no biases, values as stored', async () => {
    const g = await convert(join(dir, 'nomic'));
    const names = g.tensors.map((t) => t.name);
    assert.equal(names.length, 4 + 2 * 9);
    assert.ok(!names.some((n) => n.endsWith('.bias') && n.startsWith('blk.') && !n.includes('norm')));
    const w = encoderWeights(NOMIC);
    assert.deepEqual(await tensorF32(g, 'blk.1.ffn_up.weight'), w.get('encoder.layers.1.mlp.fc11.weight')!.data);
    assert.deepEqual(await tensorF32(g, 'blk.1.ffn_gate.weight'), w.get('encoder.layers.1.mlp.fc12.weight')!.data);
    assert.deepEqual(await tensorF32(g, 'blk.0.attn_qkv.weight'), w.get('encoder.layers.0.attn.Wqkv.weight')!.data, 'rotate-half RoPE: no permutation');
    assert.deepEqual(g.tensors.find((t) => t.name === 'blk.0.attn_qkv.weight')!.dims, [128, 384]);
  });

  test('the tensor set is checked against config.json: a missing gate and a mis-shaped Wqkv are listed', async () => {
    const d = await copyModel(join(dir, 'nomic'), 'nomic-broken');
    const tensors: StTensor[] = [];
    for (const [name, t] of encoderWeights(NOMIC)) {
      if (name === 'encoder.layers.1.mlp.fc12.weight') continue;
      const data = name === 'encoder.layers.0.attn.Wqkv.weight' ? t.data.subarray(0, 2 * 128 * 128) : t.data;
      const shape = name === 'encoder.layers.0.attn.Wqkv.weight' ? [256, 128] : t.shape;
      tensors.push({ name, dtype: 'F32', shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    }
    await writeFile(join(d, 'model.safetensors'), encodeSafetensors(tensors));
    await rejects(convert(d), (e) => {
      assert.match(e.message, /missing: encoder\.layers\.1\.mlp\.fc12\.weight/);
      assert.match(e.message, /encoder\.layers\.0\.attn\.Wqkv\.weight is \[256, 128\] where config\.json implies \[384, 128\]/);
      assert.match(e.expected ?? '', /n_layer, n_embd, n_inner/);
    });
  });

  test('config variants llama.cpp\'s nomic-bert does not compute are refused naming the key', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['activation_function', 'gelu', /SwiGLU/],
      ['rotary_emb_interleaved', true, /NEOX/],
      ['qkv_proj_bias', true, /no biases/],
      ['prenorm', true, /after each block/],
      ['n_positions', 2048, /nomic-embed-text v1\/v1\.5/],
    ];
    for (const [key, value, why] of cases) {
      const d = await copyModel(join(dir, 'nomic'), `nomic-${key}`);
      await editJson(join(d, 'config.json'), (c) => { c[key] = value; });
      await rejects(convert(d), (e) => { assert.equal(e.field, key); assert.match(e.message, why); });
    }
    const moe = await copyModel(join(dir, 'nomic'), 'nomic-moe');
    await editJson(join(moe, 'config.json'), (c) => { c.moe_every_n_layers = 2; });
    await rejects(convert(moe), (e) => assert.match(e.hint ?? '', /nomic-bert-moe/));
  });
});

test('a decoder\'s chat template (tokenizer_config.json) is carried as tokenizer.chat_template', async () => {
  const d = join(dir, 'llama-chat');
  await writeRandomLlama(d, { embd: 64, ff: 128, layers: 1, heads: 4, kvHeads: 2, vocab: 512, tied: true }, 4);
  const template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}";
  await editJson(join(d, 'tokenizer_config.json'), (c) => { c.chat_template = template; });
  const g = await convert(d);
  assert.equal(kvValue(g, 'tokenizer.chat_template'), template);
  const keys = g.kvs.map((k) => k.key);
  assert.ok(keys.indexOf('tokenizer.chat_template') > keys.indexOf('tokenizer.ggml.tokens'));
});
