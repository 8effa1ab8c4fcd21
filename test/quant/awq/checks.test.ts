// The shape rule's edges and bad input: what no rule covers, a non-LLaMA architecture, a missing tensor,
// and broken AWQ uploads (what `quantize: none` checks) are refused with errors naming the model part.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSync, closeSync, writeSync } from 'node:fs';
import { parseLlamaConfig } from '../../../src/model/llama/config.js';
import { readSafetensorsHeader } from '../../../src/formats/safetensors/index.js';
import { checkAwqCheckpoint, planAwq, quantizeAwq } from '../../../src/quant/awq/index.js';
import { InputError } from '../../../src/util/errors.js';
import { writeRandomLlama } from '../../support/gguf-fixtures.js';

let dir: string;
let good: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-awq-checks-'));
  const src = join(dir, 'src');
  // ff 264: down_proj's 264 in-features take no group of 32 or more, so it ships fp16 and listed.
  await writeRandomLlama(src, { embd: 128, ff: 264, layers: 1, heads: 2, kvHeads: 2, vocab: 512, tied: true }, 5);
  good = join(dir, 'good');
  // AutoAWQ's settings: duo scaling only, the original block's output feeds the next (no clip: faster).
  await quantizeAwq(src, good, { format: 'awq', threads: 1, group_size: 64, clip: false, duo_scaling: true, propagate: 'float', calibration: { samples: 2, length: 32 } });
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

const config = (over: Record<string, unknown>) => parseLlamaConfig({ architectures: ['LlamaForCausalLM'], hidden_size: 256, intermediate_size: 768, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 100, rms_norm_eps: 1e-5, ...over }, 'config.json');

describe('the shape rule', () => {
  test('every linear fits: the requested group, nothing kept', () => {
    const p = planAwq(config({}), { groupSize: 128, shapeRule: 'smaller-group', fp16Fallback: true });
    assert.equal(p.groupSize, 128);
    assert.deepEqual(p.kept, []);
    assert.deepEqual(p.notes, []);
  });

  test('shape_rule fp16 keeps the group and lists the layers it does not divide', () => {
    const p = planAwq(config({ intermediate_size: 320 }), { groupSize: 128, shapeRule: 'fp16', fp16Fallback: true });
    assert.equal(p.groupSize, 128);
    assert.deepEqual(p.kept, [{ module: 'model.layers.0.mlp.down_proj', reason: 'in-features 320 are not a multiple of group_size 128' }]);
    const q = planAwq(config({ intermediate_size: 320 }), { groupSize: 128, shapeRule: 'smaller-group', fp16Fallback: true });
    assert.equal(q.groupSize, 64);
    assert.deepEqual(q.kept, []);
  });

  test('a shape no rule covers is an error with fp16_fallback false, naming the layer', () => {
    assert.throws(() => planAwq(config({ intermediate_size: 300 }), { groupSize: 128, shapeRule: 'smaller-group', fp16Fallback: false, model: 'm' }),
      (e: unknown) => e instanceof InputError && e.field === 'quantize.fp16_fallback' && /model\.layers\.0\.mlp\.gate_proj: out-features 300 are not a multiple of 8/.test(e.message) && /model\.layers\.0\.mlp\.down_proj: in-features 300/.test(e.message));
  });

  test('a model where nothing can be quantized is refused', () => {
    assert.throws(() => planAwq(config({ hidden_size: 20, num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 20 }), { groupSize: 128, shapeRule: 'smaller-group', fp16Fallback: true, model: 'm' }),
      (e: unknown) => e instanceof InputError && /model m: no linear layer/.test(e.message) && e.field === 'quantize.group_size');
  });
});

describe('bad input to quantizeAwq', () => {
  test('a non-LLaMA architecture and a missing tensor', async () => {
    const src = join(dir, 'bad-src');
    await writeRandomLlama(src, { embd: 128, ff: 256, layers: 1, heads: 2, kvHeads: 2, vocab: 512, tied: true }, 6);
    const cfg = JSON.parse(await readFile(join(src, 'config.json'), 'utf8'));
    await writeFile(join(src, 'config.json'), JSON.stringify({ ...cfg, architectures: ['Gemma2ForCausalLM'] }));
    await assert.rejects(quantizeAwq(src, join(dir, 'o1'), { format: 'awq' }), (e: unknown) => e instanceof InputError && /Gemma2ForCausalLM/.test(e.message));
    await writeFile(join(src, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 2 }));
    await assert.rejects(quantizeAwq(src, join(dir, 'o2'), { format: 'awq' }), (e: unknown) => e instanceof InputError && /missing: model\.layers\.1\./.test(e.message));
  });
});

/** A copy of the good checkpoint with config.json or model.safetensors edited. */
async function broken(name: string, edit: { config?: (c: Record<string, unknown>) => void; bytes?: (file: string) => Promise<void> }): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.model']) await copyFile(join(good, f), join(d, f));
  if (edit.config) {
    const c = JSON.parse(await readFile(join(d, 'config.json'), 'utf8'));
    edit.config(c);
    await writeFile(join(d, 'config.json'), JSON.stringify(c));
  }
  if (edit.bytes) await edit.bytes(join(d, 'model.safetensors'));
  return d;
}

describe('checking a published AWQ checkpoint (quantize: none)', () => {
  test('the good one passes', async () => {
    const c = await checkAwqCheckpoint(good);
    assert.equal(c.layout, 'autoawq-gemm');
    assert.equal(c.quantized, 6);
    assert.equal(c.unquantized, 1);
    assert.equal(c.architecture, 'LlamaForCausalLM');
  });

  test('an architecture bake cannot run is still unpacked linear by linear (the GLM-4.5-Air case)', async () => {
    const d = await broken('glm', { config: (c) => { c.architectures = ['Glm4MoeForCausalLM']; } });
    const c = await checkAwqCheckpoint(d);
    assert.equal(c.architecture, undefined);
    assert.equal(c.quantized, 6);
    assert.deepEqual(c.digests, (await checkAwqCheckpoint(good)).digests);
  });

  test('wrong bits, version or group size in config.json', async () => {
    await assert.rejects(checkAwqCheckpoint(await broken('bits', { config: (c) => { (c.quantization_config as Record<string, unknown>).bits = 8; } })), (e: unknown) => e instanceof InputError && e.field === 'quantization_config.bits');
    await assert.rejects(checkAwqCheckpoint(await broken('gemv', { config: (c) => { (c.quantization_config as Record<string, unknown>).version = 'gemv'; } })), (e: unknown) => e instanceof InputError && e.field === 'quantization_config.version');
    await assert.rejects(checkAwqCheckpoint(await broken('group', { config: (c) => { (c.quantization_config as Record<string, unknown>).group_size = 128; } })),
      (e: unknown) => e instanceof InputError && /qzeros is \[2, \d+\] where autoawq-gemm with group 128 needs \[1, \d+\]/.test(e.message));
  });

  test('a linear neither packed nor listed, and one listed but packed', async () => {
    await assert.rejects(checkAwqCheckpoint(await broken('listed', { config: (c) => { (c.quantization_config as Record<string, unknown>).modules_to_not_convert = null; } })),
      (e: unknown) => e instanceof InputError && /model\.layers\.0\.mlp\.down_proj has no qweight and is not listed in modules_to_not_convert/.test(e.message));
    await assert.rejects(checkAwqCheckpoint(await broken('packed', { config: (c) => { (c.quantization_config as Record<string, unknown>).modules_to_not_convert = ['model.layers.0.mlp']; } })),
      (e: unknown) => e instanceof InputError && /gate_proj is packed but listed as not converted/.test(e.message));
  });

  test('a NaN scale and a truncated file', async () => {
    const nanScale = await broken('nan', {
      bytes: async (file) => {
        const t = (await readSafetensorsHeader(file)).tensors.get('model.layers.0.mlp.up_proj.scales')!;
        const fd = openSync(file, 'r+');
        writeSync(fd, Buffer.from([0x00, 0x7e]), 0, 2, t.offset + 6);
        closeSync(fd);
      },
    });
    await assert.rejects(checkAwqCheckpoint(nanScale), (e: unknown) => e instanceof InputError && e.field === 'model.layers.0.mlp.up_proj' && /scale NaN/.test(e.message));
    const truncated = await broken('trunc', {
      bytes: async (file) => {
        const data = await readFile(file);
        await writeFile(file, data.subarray(0, data.length - 100));
      },
    });
    await assert.rejects(checkAwqCheckpoint(truncated), (e: unknown) => e instanceof InputError && /invalid safetensors file/.test(e.message));
  });

  test('an unquantized checkpoint is no AWQ checkpoint', async () => {
    await assert.rejects(checkAwqCheckpoint(join(dir, 'src')), (e: unknown) => e instanceof InputError && /has no quantization_config/.test(e.message));
  });
});
