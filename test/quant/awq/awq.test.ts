// AWQ end to end on the real stories260K and generated LLaMA / Qwen2 checkpoints: the checkpoint unpacks
// (as vLLM reads it) to exactly the weights the search produced, in both layouts; AWQ's KL divergence from
// the original is below round-to-nearest's at the same group size (both printed); the shape rule is stated.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openLlamaCheckpoint } from '../../../src/model/llama/config.js';
import { checkAwqCheckpoint, quantizeAwq, type AwqQuantSpec, type AwqResult } from '../../../src/quant/awq/index.js';
import { verifyAwq } from '../../../src/verify/awq/index.js';
import type { VerifyReport } from '../../../src/verify/gates.js';
import { writeRandomQwen2 } from '../../support/awq-fixtures.js';
import { STORIES_EVAL, STORIES_HF, writeRandomLlama } from '../../support/gguf-fixtures.js';

let dir: string;
let evalText: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-awq-'));
  evalText = await readFile(STORIES_EVAL, 'utf8');
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

const SMALL: Partial<AwqQuantSpec> = { threads: 1, calibration: { samples: 8, length: 64 } };

async function run(src: string, name: string, spec: Partial<AwqQuantSpec> = {}): Promise<{ out: string; r: AwqResult; report: VerifyReport }> {
  const out = join(dir, name);
  const r = await quantizeAwq(src, out, { format: 'awq', ...SMALL, ...spec });
  const report = await verifyAwq(name, src, out, { max_kld: 0.2 }, { digests: r.digests, evalText, ctx: 128, threads: 1 });
  const m = report.metrics;
  console.log(`# ${name}: group ${r.plan.groupSize}, ${m.quantized_linears} linears 4-bit, ${m.fp16_linears} fp16; KLD AWQ ${m.kld_mean!.toFixed(5)} vs RTN ${m.rtn_kld_mean!.toFixed(5)} (ratio ${m.kld_vs_rtn!.toFixed(3)}); same top AWQ ${m.same_top_pct!.toFixed(1)}% vs RTN ${m.rtn_same_top_pct!.toFixed(1)}%; PPL ${m.ppl!.toFixed(3)} (base ${m.ppl_base!.toFixed(3)}, RTN ${m.rtn_ppl!.toFixed(3)})`);
  return { out, r, report };
}

describe('stories260K (in-features 64 and 172, out-features 172: the shape rule at work)', () => {
  let gemm: Awaited<ReturnType<typeof run>>;
  let ct: Awaited<ReturnType<typeof run>>;
  before(async () => {
    gemm = await run(STORIES_HF, 'stories-gemm', { checkpoint: 'autoawq-gemm' });
    ct = await run(STORIES_HF, 'stories-ct', { checkpoint: 'compressed-tensors' });
  });

  test('group 128 asked, 64 used (in-features 64); gate/up (172 outputs) and down (172 inputs) stay fp16, listed', async () => {
    const { plan } = gemm.r;
    assert.equal(plan.groupSize, 64);
    assert.match(plan.notes[0]!, /group_size 128 requested; 64 used because model\.layers\.0\.self_attn\.q_proj has 64 in-features/);
    assert.deepEqual(plan.kept.filter((k) => k.module.startsWith('model.layers.0.')), [
      { module: 'model.layers.0.mlp.gate_proj', reason: 'out-features 172 are not a multiple of 8 (4-bit values are packed 8 to an int32)' },
      { module: 'model.layers.0.mlp.up_proj', reason: 'out-features 172 are not a multiple of 8 (4-bit values are packed 8 to an int32)' },
      { module: 'model.layers.0.mlp.down_proj', reason: 'in-features 172 are not a multiple of any group size in {128, 64, 32}' },
    ]);
    const qc = JSON.parse(await readFile(join(gemm.out, 'config.json'), 'utf8')).quantization_config;
    assert.deepEqual({ ...qc, modules_to_not_convert: undefined }, { quant_method: 'awq', bits: 4, group_size: 64, zero_point: true, version: 'gemm', modules_to_not_convert: undefined });
    // HF names for transformers, vLLM's fused gate_up_proj for vLLM's substring match.
    assert.ok(qc.modules_to_not_convert.includes('model.layers.4.mlp.gate_proj') && qc.modules_to_not_convert.includes('model.layers.4.mlp.gate_up_proj') && qc.modules_to_not_convert.includes('model.layers.4.mlp.down_proj'));
    assert.ok(!qc.modules_to_not_convert.some((m: string) => m.includes('self_attn')));
    const ctc = JSON.parse(await readFile(join(ct.out, 'config.json'), 'utf8')).quantization_config;
    assert.equal(ctc.quant_method, 'compressed-tensors');
    assert.equal(ctc.format, 'pack-quantized');
    assert.deepEqual(ctc.config_groups.group_0.weights, { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: 64, dynamic: false, actorder: null, block_structure: null, observer: 'minmax', observer_kwargs: {} });
    assert.deepEqual(ctc.ignore.slice(0, 4), ['lm_head', 'model.layers.0.mlp.gate_proj', 'model.layers.0.mlp.up_proj', 'model.layers.0.mlp.down_proj']);
  });

  test('both layouts unpack, as vLLM reads them, to exactly the weights the search produced (the same in both)', async () => {
    for (const x of [gemm, ct]) {
      assert.equal(x.report.metrics.roundtrip_mismatches, 0);
      const check = await checkAwqCheckpoint(x.out);
      assert.equal(check.quantized, 20);
      assert.equal(check.unquantized, 15);
      assert.deepEqual(check.digests, x.r.digests);
    }
    assert.deepEqual(gemm.r.digests, ct.r.digests);
    const files = (await readdir(gemm.out)).sort();
    assert.deepEqual(files, ['CONVERSION.txt', 'config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.model', 'tokenizer_config.json']);
    const names = [...(await openLlamaCheckpoint(gemm.out, { checkTensors: false })).checkpoint.tensors.keys()];
    assert.ok(names.includes('model.layers.0.self_attn.q_proj.qweight') && names.includes('model.layers.0.mlp.up_proj.weight'));
    const ctNames = [...(await openLlamaCheckpoint(ct.out, { checkTensors: false })).checkpoint.tensors.keys()];
    assert.ok(['weight_packed', 'weight_scale', 'weight_zero_point', 'weight_shape'].every((s) => ctNames.includes(`model.layers.0.self_attn.o_proj.${s}`)));
  });

  test('AWQ KLD below RTN at the same group size; gates pass', () => {
    for (const x of [gemm, ct]) {
      const m = x.report.metrics;
      assert.ok(m.kld_mean! < m.rtn_kld_mean!, `AWQ ${m.kld_mean} vs RTN ${m.rtn_kld_mean}`);
      assert.equal(x.report.passed, true, JSON.stringify(x.report.gates));
      assert.deepEqual(x.report.gates.map((g) => g.gate), ['max_kld', 'max_kld_vs_rtn', 'checkpoint_roundtrip']);
    }
  });
});

for (const model of ['llama', 'qwen2'] as const) {
  test(`generated ${model} (sizes multiples of 128, group 128): exact round trip, AWQ KLD below RTN's`, async () => {
    const src = join(dir, `${model}-src`);
    if (model === 'llama') await writeRandomLlama(src, { embd: 256, ff: 512, layers: 2, heads: 4, kvHeads: 2, vocab: 512, tied: false }, 7);
    else await writeRandomQwen2(src, { embd: 256, ff: 384, layers: 2, heads: 4, kvHeads: 4, vocab: 384, tied: true }, 8);
    const { r, report } = await run(src, model, { checkpoint: model === 'llama' ? 'autoawq-gemm' : 'compressed-tensors' });
    assert.equal(r.plan.groupSize, 128);
    assert.deepEqual(r.plan.kept, []);
    const m = report.metrics;
    assert.equal(m.quantized_linears, 14);
    assert.equal(m.roundtrip_mismatches, 0);
    assert.ok(m.kld_mean! < m.rtn_kld_mean!, `AWQ ${m.kld_mean} vs RTN ${m.rtn_kld_mean}`);
    assert.equal(report.passed, true, JSON.stringify(report.gates));
    // v -> o is searched only without grouped-query attention (qwen2 here: 4 heads, 4 kv heads).
    const vo = r.scales[0]!.choices.find((s) => s.group === 'v_proj -> o_proj')!;
    if (model === 'llama') assert.match(vo.skipped!, /grouped-query attention/);
    else assert.ok(vo.alpha !== undefined && !vo.skipped);
  });
}
