// Qwen2ForCausalLM: LLaMA layout plus Q/K/V biases, NEOX-style RoPE (so no Q/K permutation).
import type { Architecture } from './types.js';
import { decoderHyperParameters, decoderShape, decoderTensorName, decoderTensors } from './decoder.js';

export const qwen2: Architecture = {
  hfArchitectures: ['Qwen2ForCausalLM'],
  ggufArch: 'qwen2',
  shape: decoderShape,
  hyperParameters: (config, shape, file) => decoderHyperParameters('qwen2', config, shape, file, { ropeDims: false }),
  // Qwen2Attention always has Q/K/V biases (config.json has no key for them) and never an o_proj bias.
  expectedTensors: (config, shape, file) => decoderTensors(config, shape, file, { qkvBias: true, outputBias: false, mlpBias: false }),
  tensorName: decoderTensorName,
};
