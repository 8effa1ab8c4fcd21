// A LLaMA-family decoder (llama, mistral, qwen2) as the forward pass needs it: read from config.json with
// the GGUF converter's architecture registry (same shape rules, same expected tensors), and the
// checkpoint checked against it before anything runs: a missing or mis-shaped tensor is bad input.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCHITECTURES, type Architecture, type HfConfig, type ModelShape } from '../../convert/architectures/index.js';
import { checkTensorSet } from '../../convert/tensor-set.js';
import { openCheckpoint, type Checkpoint } from '../../formats/safetensors/index.js';
import { InputError } from '../../util/errors.js';

export interface LlamaConfig extends ModelShape {
  /** config.json `architectures[0]`. */
  hfArchitecture: string;
  eps: number;
  ropeTheta: number;
  /** Linear RoPE scaling: positions are divided by this (1 without scaling). */
  ropeScale: number;
  tied: boolean;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** Mistral's sliding window: sequences longer than it are refused (the forward pass attends to all). */
  slidingWindow?: number;
  /** The tensors config.json calls for (HF names and shapes). */
  expected: Map<string, { shape: number[]; optional?: boolean }>;
}

export const LLAMA_FAMILY: readonly string[] = ARCHITECTURES.flatMap((a) => a.hfArchitectures);

async function readConfigJson(dir: string): Promise<{ config: HfConfig; file: string }> {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InputError(`${dir} has no readable config.json: ${(err as Error).message}`, { file, expected: 'a Hugging Face checkpoint folder (config.json + *.safetensors)', cause: err });
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (err) {
    throw new InputError(`${file} is not valid JSON: ${(err as Error).message}`, { file, cause: err });
  }
  if (!config || typeof config !== 'object' || Array.isArray(config)) throw new InputError(`${file} is not a JSON object`, { file });
  return { config: config as HfConfig, file };
}

/** The architecture entry for a LLaMA-family config, or a clear refusal naming the ones the forward pass runs. */
export function llamaArchitecture(config: HfConfig, file: string): Architecture {
  const names = config.architectures;
  const name = Array.isArray(names) && typeof names[0] === 'string' ? names[0] : undefined;
  const arch = ARCHITECTURES.find((a) => name !== undefined && a.hfArchitectures.includes(name));
  if (!arch) {
    throw new InputError(`${file}: architecture ${JSON.stringify(name ?? null)} is not a LLaMA-family decoder bake can run`, {
      file, field: 'architectures[0]', expected: `one of ${LLAMA_FAMILY.join(', ')}`,
      hint: 'AWQ and its verification run bake\'s own forward pass, which knows these decoders only',
    });
  }
  return arch;
}

function numberOr(config: HfConfig, key: string, file: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InputError(`${file}: ${key} is ${JSON.stringify(config[key])}`, { file, field: key, expected: 'a positive number' });
  return v;
}

export function parseLlamaConfig(config: HfConfig, file: string): LlamaConfig {
  const arch = llamaArchitecture(config, file);
  const shape = arch.shape(config, file);
  const expected = arch.expectedTensors(config, shape, file);
  const act = config.hidden_act ?? 'silu';
  if (act !== 'silu') throw new InputError(`${file}: hidden_act ${JSON.stringify(act)} is not SwiGLU's silu`, { file, field: 'hidden_act', expected: '"silu"' });
  const scaling = config.rope_scaling as Record<string, unknown> | null | undefined;
  let ropeScale = 1;
  if (scaling) {
    const kind = scaling.rope_type ?? scaling.type;
    if (kind === 'linear' && typeof scaling.factor === 'number' && scaling.factor > 0) ropeScale = scaling.factor;
    else if (kind !== 'default') {
      throw new InputError(`${file}: rope_scaling type ${JSON.stringify(kind)} is not supported by bake's forward pass`, { file, field: 'rope_scaling', expected: 'null or {"type": "linear", "factor": N}' });
    }
  }
  const layer0 = 'model.layers.0.';
  const sw = config.sliding_window;
  return {
    ...shape,
    hfArchitecture: (config.architectures as string[])[0]!,
    eps: numberOr(config, 'rms_norm_eps', file),
    ropeTheta: numberOr(config, 'rope_theta', file, 10000),
    ropeScale,
    tied: expected.get('lm_head.weight')?.optional === true,
    qkvBias: expected.has(`${layer0}self_attn.q_proj.bias`),
    oBias: expected.has(`${layer0}self_attn.o_proj.bias`),
    mlpBias: expected.has(`${layer0}mlp.down_proj.bias`),
    ...(typeof sw === 'number' && sw > 0 && config.use_sliding_window !== false ? { slidingWindow: sw } : {}),
    expected,
  };
}

export interface LlamaCheckpoint {
  dir: string;
  configFile: string;
  config: LlamaConfig;
  /** config.json as read (copied into outputs). */
  raw: HfConfig;
  checkpoint: Checkpoint;
}

/**
 * Opens a LLaMA-family checkpoint folder: config.json parsed, safetensors headers read, and the tensors
 * checked against the config (one error listing every missing, unexpected or mis-shaped tensor).
 */
export async function openLlamaCheckpoint(dir: string, opts: { checkTensors?: boolean } = {}): Promise<LlamaCheckpoint> {
  const { config: raw, file } = await readConfigJson(dir);
  const config = parseLlamaConfig(raw, file);
  const checkpoint = await openCheckpoint(dir);
  if (opts.checkTensors !== false) {
    checkTensorSet(checkpoint, {
      configFile: file, hfArchitecture: config.hfArchitecture, nLayer: config.nLayer,
      expected: () => config.expected,
      dropped: (name) => name.endsWith('rotary_emb.inv_freq'),
    });
  }
  return { dir, configFile: file, config, raw, checkpoint };
}

export { readConfigJson };
