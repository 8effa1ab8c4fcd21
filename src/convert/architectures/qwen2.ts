// Qwen2ForCausalLM: LLaMA layout plus Q/K/V biases, NEOX-style RoPE (so no Q/K permutation).
import type { Architecture } from './types.js';
import { decoderHyperParameters, decoderShape, decoderTensorName } from './decoder.js';

export const qwen2: Architecture = {
  hfArchitectures: ['Qwen2ForCausalLM'],
  ggufArch: 'qwen2',
  shape: decoderShape,
  hyperParameters: (config, shape, file) => decoderHyperParameters('qwen2', config, shape, file, { ropeDims: false }),
  tensorName: decoderTensorName,
};
