// AWQ checkpoints on disk, both layouts vLLM loads: written by bake (model.safetensors + config.json with
// its quantization_config + the source's tokenizer and generation files), and read back the way vLLM
// reads them. The reader serves two checks: bake's own output (every linear unpacks to exactly the
// dequantized weights the search produced) and a published checkpoint shipped as it is (`quantize:
// none`), whose structure is checked linear by linear so a broken upload fails the build.
import { copyFile, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openCheckpoint, readTensorF32, readTensorRaw, bytesOf, type Checkpoint, type SafetensorsTensor, type TensorToWrite } from '../../formats/safetensors/index.js';
import { parseLlamaConfig, LLAMA_FAMILY, type LlamaConfig } from '../../model/llama/config.js';
import { hasBias, linearShape, LINEARS, type LayerWeights, type Linear, type LinearName, type LlamaWeights } from '../../model/llama/weights.js';
import { sha256Bytes, type Sha256Hex } from '../../util/digest.js';
import { InputError } from '../../util/errors.js';
import { toFp16Bits, type QuantizedLinear } from './kernel.js';
import { packAwqGemm, packCompressed, PACK, symmetricZeroPoints, unpackAwqGemm, unpackCompressed, type Unpacked } from './pack.js';
import { moduleName, type AwqPlan } from './plan.js';

export type CheckpointLayout = 'autoawq-gemm' | 'compressed-tensors';

/** vLLM fuses these into one layer; modules_to_not_convert matches by substring of the fused name. */
const FUSED: Partial<Record<LinearName, string>> = {
  'self_attn.q_proj': 'self_attn.qkv_proj', 'self_attn.k_proj': 'self_attn.qkv_proj', 'self_attn.v_proj': 'self_attn.qkv_proj',
  'mlp.gate_proj': 'mlp.gate_up_proj', 'mlp.up_proj': 'mlp.gate_up_proj',
};

/** The `quantization_config` of config.json for each layout. */
export function quantizationConfig(layout: CheckpointLayout, plan: AwqPlan): Record<string, unknown> {
  const kept = plan.kept.map((k) => k.module);
  if (layout === 'autoawq-gemm') {
    // HF module names for transformers, vLLM's fused names (qkv_proj, gate_up_proj) for vLLM's substring match.
    const fused = plan.kept.flatMap((k) => {
      const m = /^(model\.layers\.\d+)\.(.+)$/.exec(k.module)!;
      const f = FUSED[m[2] as LinearName];
      return f ? [`${m[1]}.${f}`] : [];
    });
    const names = [...new Set([...kept, ...fused])].sort();
    return { quant_method: 'awq', bits: 4, group_size: plan.groupSize, zero_point: true, version: 'gemm', modules_to_not_convert: names.length ? names : null };
  }
  return {
    quant_method: 'compressed-tensors',
    format: 'pack-quantized',
    quantization_status: 'compressed',
    config_groups: {
      group_0: {
        targets: ['Linear'],
        weights: { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: plan.groupSize, dynamic: false, actorder: null, block_structure: null, observer: 'minmax', observer_kwargs: {} },
        input_activations: null,
        output_activations: null,
      },
    },
    ignore: ['lm_head', ...kept],
    kv_cache_scheme: null,
    global_compression_ratio: null,
    sparsity_config: {},
  };
}

const f16 = (a: Float32Array): Uint8Array => bytesOf(toFp16Bits(a));

/** The tensors of one layer as it ships: quantized linears packed, everything else fp16. */
export function layerTensors(layout: CheckpointLayout, layer: number, shipped: LayerWeights, quantized: Partial<Record<LinearName, QuantizedLinear>>, c: LlamaConfig): TensorToWrite[] {
  const p = `model.layers.${layer}.`;
  const out: TensorToWrite[] = [
    { name: `${p}input_layernorm.weight`, dtype: 'F16', shape: [c.nEmbd], data: f16(shipped.inputNorm) },
    { name: `${p}post_attention_layernorm.weight`, dtype: 'F16', shape: [c.nEmbd], data: f16(shipped.postNorm) },
  ];
  for (const n of LINEARS) {
    const l = shipped.linears[n];
    const ql = quantized[n];
    const at = `${p}${n}.`;
    if (l.bias) out.push({ name: `${at}bias`, dtype: 'F16', shape: [l.out], data: f16(l.bias) });
    if (!ql) {
      out.push({ name: `${at}weight`, dtype: 'F16', shape: [l.out, l.in], data: f16(l.weight) });
    } else if (layout === 'autoawq-gemm') {
      const t = packAwqGemm(ql);
      const groups = ql.in / ql.groupSize;
      out.push(
        { name: `${at}qweight`, dtype: 'I32', shape: [ql.in, ql.out / PACK], data: bytesOf(t.qweight) },
        { name: `${at}qzeros`, dtype: 'I32', shape: [groups, ql.out / PACK], data: bytesOf(t.qzeros) },
        { name: `${at}scales`, dtype: 'F16', shape: [groups, ql.out], data: bytesOf(t.scales) },
      );
    } else {
      const t = packCompressed(ql);
      const groups = ql.in / ql.groupSize;
      out.push(
        { name: `${at}weight_packed`, dtype: 'I32', shape: [ql.out, ql.in / PACK], data: bytesOf(t.weight_packed) },
        { name: `${at}weight_zero_point`, dtype: 'I32', shape: [ql.out / PACK, groups], data: bytesOf(t.weight_zero_point) },
        { name: `${at}weight_scale`, dtype: 'F16', shape: [ql.out, groups], data: bytesOf(t.weight_scale) },
        { name: `${at}weight_shape`, dtype: 'I64', shape: [2], data: bytesOf(t.weight_shape) },
      );
    }
  }
  return out;
}

/** Embeddings, final norm and (untied) lm_head in fp16, read from the source when written. */
export function globalTensors(src: Checkpoint, c: LlamaConfig): TensorToWrite[] {
  const lazy = (name: string, shape: number[]): TensorToWrite => ({ name, dtype: 'F16', shape, data: async () => f16(await readTensorF32(src.tensors.get(name)!)) });
  const out = [lazy('model.embed_tokens.weight', [c.vocabSize, c.nEmbd]), lazy('model.norm.weight', [c.nEmbd])];
  if (src.tensors.has('lm_head.weight')) out.push(lazy('lm_head.weight', [c.vocabSize, c.nEmbd]));
  return out;
}

/** Files of the source folder that travel with the checkpoint: tokenizer, generation config, licence... */
export async function copyCompanionFiles(srcDir: string, outDir: string): Promise<string[]> {
  const copied: string[] = [];
  for (const e of await readdir(srcDir, { withFileTypes: true })) {
    if (!e.isFile()) continue;
    if (e.name === 'config.json' || /\.safetensors(\.index\.json)?$/.test(e.name) || /\.(bin|pt|pth|ckpt|gguf|onnx|onnx_data|msgpack|h5)$/.test(e.name)) continue;
    await copyFile(join(srcDir, e.name), join(outDir, e.name));
    copied.push(e.name);
  }
  return copied.sort();
}

// ---- reading, as vLLM does ---------------------------------------------------------------------

export interface AwqCheckpointInfo {
  dir: string;
  layout: CheckpointLayout;
  groupSize: number;
  /** modules_to_not_convert / ignore as written. */
  notConverted: string[];
  /** compressed-tensors symmetric: no zero points (signed values, zero 8 in unsigned terms). */
  symmetric: boolean;
  config: Record<string, unknown>;
  configFile: string;
  checkpoint: Checkpoint;
}

/** A linear unpacked from the checkpoint: codes, zero points and scales as float32 values. */
export type UnpackedLinear = Unpacked<Float32Array>;

function bad(info: { configFile: string }, message: string, field?: string, hint?: string): InputError {
  return new InputError(`${info.configFile}: ${message}`, { file: info.configFile, field, expected: 'a 4-bit AWQ checkpoint vLLM loads (AutoAWQ GEMM or compressed-tensors pack-quantized)', hint: hint ?? 'the upload is broken or not what the recipe says; re-export it or fix quantize: in the recipe' });
}

export async function openAwqCheckpoint(dir: string): Promise<AwqCheckpointInfo> {
  const configFile = join(dir, 'config.json');
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new InputError(`${configFile}: cannot read config.json (${(err as Error).message})`, { file: configFile, cause: err });
  }
  const qc = config.quantization_config as Record<string, unknown> | undefined;
  const ctx = { configFile };
  if (!qc || typeof qc !== 'object') throw bad(ctx, 'has no quantization_config', 'quantization_config');
  const method = String(qc.quant_method ?? '').toLowerCase();
  let layout: CheckpointLayout;
  let groupSize: number;
  let notConverted: string[];
  let symmetric = false;
  if (method === 'awq') {
    const bits = qc.bits ?? qc.w_bit;
    if (bits !== 4) throw bad(ctx, `quantization_config.bits is ${JSON.stringify(bits)}`, 'quantization_config.bits');
    const version = String(qc.version ?? 'gemm').toLowerCase();
    if (version !== 'gemm') throw bad(ctx, `quantization_config.version is ${JSON.stringify(qc.version)}; bake checks AutoAWQ GEMM checkpoints`, 'quantization_config.version');
    if (qc.zero_point !== true) throw bad(ctx, `quantization_config.zero_point is ${JSON.stringify(qc.zero_point)}; AutoAWQ GEMM stores zero points`, 'quantization_config.zero_point');
    groupSize = Number(qc.group_size ?? qc.q_group_size);
    notConverted = Array.isArray(qc.modules_to_not_convert) ? qc.modules_to_not_convert.map(String) : [];
    layout = 'autoawq-gemm';
  } else if (method === 'compressed-tensors') {
    const groups = Object.values((qc.config_groups ?? {}) as Record<string, Record<string, unknown>>);
    if (groups.length !== 1) throw bad(ctx, `quantization_config.config_groups has ${groups.length} groups; bake checks one 4-bit weight group`, 'quantization_config.config_groups');
    const w = (groups[0]!.weights ?? {}) as Record<string, unknown>;
    const format = groups[0]!.format ?? qc.format;
    if (format !== 'pack-quantized') throw bad(ctx, `format is ${JSON.stringify(format)}, not pack-quantized`, 'quantization_config.format');
    if (w.num_bits !== 4 || w.type !== 'int' || w.strategy !== 'group') throw bad(ctx, `weights are ${JSON.stringify({ num_bits: w.num_bits, type: w.type, strategy: w.strategy })}; bake checks 4-bit int group quantization`, 'quantization_config.config_groups');
    if (groups[0]!.input_activations) throw bad(ctx, 'quantizes activations too; bake checks weight-only (W4A16) checkpoints', 'quantization_config.config_groups');
    groupSize = Number(w.group_size);
    symmetric = w.symmetric === true;
    notConverted = Array.isArray(qc.ignore) ? qc.ignore.map(String) : [];
    layout = 'compressed-tensors';
  } else {
    throw bad(ctx, `quantization_config.quant_method is ${JSON.stringify(qc.quant_method)}`, 'quantization_config.quant_method');
  }
  if (!Number.isInteger(groupSize) || groupSize < 1) throw bad(ctx, `group_size is ${groupSize}`, 'quantization_config.group_size');
  const checkpoint = await openCheckpoint(dir);
  return { dir, layout, groupSize, notConverted, symmetric, config, configFile, checkpoint };
}

function tensorProblem(info: AwqCheckpointInfo, t: SafetensorsTensor | undefined, name: string, dtype: readonly string[], shape: number[]): string | undefined {
  if (!t) return `${name} is missing`;
  if (!dtype.includes(t.dtype)) return `${name} is ${t.dtype}, not ${dtype.join(' or ')}`;
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) return `${name} is [${t.shape.join(', ')}] where ${info.layout} with group ${info.groupSize} needs [${shape.join(', ')}]`;
  return undefined;
}

async function int32s(t: SafetensorsTensor): Promise<Int32Array> {
  const raw = await readTensorRaw(t);
  return new Int32Array(raw.buffer, raw.byteOffset, raw.length / 4);
}

/**
 * The packed tensors of `base` (a module name) unpacked as vLLM reads them, after checking their dtypes
 * and shapes against the layout, the group size and (when known) the shape config.json implies.
 */
export async function unpackLinear(info: AwqCheckpointInfo, base: string, shape?: [number, number]): Promise<UnpackedLinear> {
  const T = info.checkpoint.tensors;
  const g = info.groupSize;
  const fail = (problem: string) => new InputError(`${info.dir}: ${problem}`, { file: info.dir, field: base, expected: `${info.layout} tensors of a 4-bit linear with group ${g}`, hint: 'the upload is broken or incomplete; re-download or re-export it' });
  if (info.layout === 'autoawq-gemm') {
    const qw = T.get(`${base}.qweight`);
    if (!qw || qw.shape.length !== 2) throw fail(`${base}.qweight is ${qw ? `[${qw.shape.join(', ')}]` : 'missing'}`);
    const [inF, words] = [qw.shape[0]!, qw.shape[1]!];
    const out = words * PACK;
    if (shape && (shape[0] !== out || shape[1] !== inF)) throw fail(`${base}.qweight is [${inF}, ${words}], so the linear is [${out}, ${inF}] where config.json implies [${shape.join(', ')}]`);
    if (inF % g !== 0) throw fail(`${base} has ${inF} in-features, not a multiple of group_size ${g}`);
    for (const p of [tensorProblem(info, qw, `${base}.qweight`, ['I32'], [inF, words]), tensorProblem(info, T.get(`${base}.qzeros`), `${base}.qzeros`, ['I32'], [inF / g, words]), tensorProblem(info, T.get(`${base}.scales`), `${base}.scales`, ['F16', 'BF16'], [inF / g, out])]) if (p) throw fail(p);
    return unpackAwqGemm({ qweight: await int32s(qw), qzeros: await int32s(T.get(`${base}.qzeros`)!), scales: await readTensorF32(T.get(`${base}.scales`)!) }, out, inF, g);
  }
  const st = T.get(`${base}.weight_shape`);
  if (!st || !['I64', 'I32'].includes(st.dtype) || st.shape.length !== 1 || st.shape[0] !== 2) throw fail(`${base}.weight_shape is ${st ? `${st.dtype} [${st.shape.join(', ')}]` : 'missing'}`);
  const raw = await readTensorRaw(st);
  const dims = st.dtype === 'I64' ? Array.from(new BigInt64Array(raw.buffer, raw.byteOffset, 2), Number) : Array.from(new Int32Array(raw.buffer, raw.byteOffset, 2));
  const [out, inF] = dims as [number, number];
  if (shape && (shape[0] !== out || shape[1] !== inF)) throw fail(`${base}.weight_shape says [${out}, ${inF}] where config.json implies [${shape.join(', ')}]`);
  if (!(out > 0 && inF > 0) || inF % g !== 0) throw fail(`${base}.weight_shape [${out}, ${inF}] does not fit group_size ${g}`);
  const groups = inF / g;
  const problems = [
    tensorProblem(info, T.get(`${base}.weight_packed`), `${base}.weight_packed`, ['I32'], [out, Math.ceil(inF / PACK)]),
    tensorProblem(info, T.get(`${base}.weight_scale`), `${base}.weight_scale`, ['F16', 'BF16'], [out, groups]),
    info.symmetric ? undefined : tensorProblem(info, T.get(`${base}.weight_zero_point`), `${base}.weight_zero_point`, ['I32'], [Math.ceil(out / PACK), groups]),
  ];
  for (const p of problems) if (p) throw fail(p);
  return unpackCompressed({
    weight_packed: await int32s(T.get(`${base}.weight_packed`)!),
    weight_zero_point: info.symmetric ? symmetricZeroPoints(out, groups) : await int32s(T.get(`${base}.weight_zero_point`)!),
    weight_scale: await readTensorF32(T.get(`${base}.weight_scale`)!),
    weight_shape: BigInt64Array.of(BigInt(out), BigInt(inF)),
  }, g);
}

/** (q - zero) * scale, in float32 (exact for fp16 scales); refuses non-finite or non-positive scales. */
export function dequantizeUnpacked(u: UnpackedLinear, name: string, file: string): Float32Array {
  const w = new Float32Array(u.out * u.in);
  for (let gi = 0; gi < u.scales.length; gi++) {
    const s = u.scales[gi]!;
    if (!(s > 0) || !Number.isFinite(s)) {
      const row = Math.floor(gi / (u.in / u.groupSize));
      throw new InputError(`${file}: ${name} has scale ${s} at output ${row}, group ${gi % (u.in / u.groupSize)}`, { file, field: name, expected: 'finite positive scales', hint: 'the upload is broken; re-download or re-export it' });
    }
    const z = u.zeros[gi]!;
    for (let j = 0, at = gi * u.groupSize; j < u.groupSize; j++) w[at + j] = (u.q[at + j]! - z) * s;
  }
  return w;
}

/** Digest of dequantized weights: what a round trip must give back. */
export function weightDigest(w: Float32Array): Sha256Hex {
  return sha256Bytes(bytesOf(w));
}

/** vLLM's rule: a module is left unquantized when a modules_to_not_convert / ignore entry names it. */
export function notConverted(info: AwqCheckpointInfo, module: string): boolean {
  if (info.layout === 'autoawq-gemm') return info.notConverted.some((m) => module.includes(m));
  return info.notConverted.some((m) => (m.startsWith('re:') ? new RegExp(m.slice(3)).test(module) : m === module));
}

export interface CheckpointCheck {
  layout: CheckpointLayout;
  groupSize: number;
  /** Quantized linears unpacked, and those left in 16 bits. */
  quantized: number;
  unquantized: number;
  /** Per quantized module: the digest of its dequantized weights. */
  digests: Record<string, Sha256Hex>;
  /** config.json's architecture when bake's forward pass knows it (and the layer set was checked). */
  architecture?: string;
}

/**
 * Checks a checkpoint the way vLLM would load it: every packed linear's tensors exist with the dtypes
 * and shapes its layout and group size imply and unpack to finite weights; for LLaMA-family configs,
 * every linear of every layer is either packed or named in modules_to_not_convert / ignore (with its
 * 16-bit weight present). Throws an InputError naming the first broken tensor.
 */
export async function checkAwqCheckpoint(dir: string): Promise<CheckpointCheck> {
  const info = await openAwqCheckpoint(dir);
  const T = info.checkpoint.tensors;
  const suffix = info.layout === 'autoawq-gemm' ? '.qweight' : '.weight_packed';
  const bases = [...T.keys()].filter((n) => n.endsWith(suffix)).map((n) => n.slice(0, -suffix.length)).sort();
  if (!bases.length) throw bad(info, `no ${suffix.slice(1)} tensor in the checkpoint: nothing is quantized`, 'quantization_config', 'the upload holds unquantized weights; use quantize: awq to make an AWQ checkpoint from it');
  const digests: Record<string, Sha256Hex> = {};
  let shapes: Map<string, [number, number]> | undefined;
  let architecture: string | undefined;
  const archs = info.config.architectures;
  if (Array.isArray(archs) && LLAMA_FAMILY.includes(String(archs[0]))) {
    const c = parseLlamaConfig(info.config, info.configFile);
    architecture = c.hfArchitecture;
    shapes = new Map();
    let unquantized = 0;
    for (let l = 0; l < c.nLayer; l++) {
      for (const n of LINEARS) {
        const m = moduleName(l, n);
        shapes.set(m, linearShape(c, n));
        const packed = T.has(`${m}${suffix}`);
        const listed = notConverted(info, m);
        if (packed && listed) throw bad(info, `${m} is packed but listed as not converted`, 'quantization_config');
        if (!packed) {
          if (!listed) throw bad(info, `${m} has no ${suffix.slice(1)} and is not listed in ${info.layout === 'autoawq-gemm' ? 'modules_to_not_convert' : 'ignore'}: vLLM would expect it packed`, 'quantization_config');
          const w = T.get(`${m}.weight`);
          const [out, inF] = linearShape(c, n);
          const p = tensorProblem(info, w, `${m}.weight`, ['F16', 'BF16', 'F32'], [out, inF]);
          if (p) throw new InputError(`${dir}: ${p}`, { file: dir, field: `${m}.weight` });
          unquantized++;
        }
        if (hasBias(c, n) && !T.has(`${m}.bias`)) throw new InputError(`${dir}: ${m}.bias is missing`, { file: dir, field: `${m}.bias` });
      }
    }
    for (const b of bases) if (!shapes.has(b)) throw bad(info, `${b} is packed but config.json's ${c.hfArchitecture} has no such linear`, 'quantization_config');
    for (const b of bases) digests[b] = weightDigest(dequantizeUnpacked(await unpackLinear(info, b, shapes.get(b)), b, dir));
    return { layout: info.layout, groupSize: info.groupSize, quantized: bases.length, unquantized, digests, architecture };
  }
  for (const b of bases) digests[b] = weightDigest(dequantizeUnpacked(await unpackLinear(info, b), b, dir));
  return { layout: info.layout, groupSize: info.groupSize, quantized: bases.length, unquantized: 0, digests };
}

/** The weights a LLaMA-family AWQ checkpoint stands for: packed linears dequantized, the rest widened. */
export async function awqCheckpointWeights(dir: string): Promise<{ weights: LlamaWeights; info: AwqCheckpointInfo }> {
  const info = await openAwqCheckpoint(dir);
  const c = parseLlamaConfig(info.config, info.configFile);
  const T = info.checkpoint.tensors;
  const read = async (name: string): Promise<Float32Array> => {
    const t = T.get(name);
    if (!t) throw new InputError(`${dir}: tensor ${name} is missing`, { file: dir, field: name });
    return readTensorF32(t);
  };
  const suffix = info.layout === 'autoawq-gemm' ? '.qweight' : '.weight_packed';
  const weights: LlamaWeights = {
    config: c,
    embed: () => read('model.embed_tokens.weight'),
    finalNorm: () => read('model.norm.weight'),
    lmHead: () => read(T.has('lm_head.weight') ? 'lm_head.weight' : 'model.embed_tokens.weight'),
    async layer(i) {
      const linears = {} as Record<LinearName, Linear>;
      for (const n of LINEARS) {
        const m = moduleName(i, n);
        const shape = linearShape(c, n);
        const weight = T.has(`${m}${suffix}`) ? dequantizeUnpacked(await unpackLinear(info, m, shape), m, dir) : await read(`${m}.weight`);
        linears[n] = { weight, out: shape[0], in: shape[1], ...(hasBias(c, n) ? { bias: await read(`${m}.bias`) } : {}) };
      }
      return { inputNorm: await read(`model.layers.${i}.input_layernorm.weight`), postNorm: await read(`model.layers.${i}.post_attention_layernorm.weight`), linears };
    },
  };
  return { weights, info };
}

/** Bytes of the safetensors files of a folder (size ratios). */
export async function safetensorsBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir)) if (e.endsWith('.safetensors')) total += (await stat(join(dir, e))).size;
  return total;
}

