// LlamaForCausalLM: the reference decoder; Q and K rows are permuted to llama.cpp's interleaved RoPE.
// attention_bias adds q/k/v/o biases and mlp_bias gate/up/down biases (both false unless given).
import type { Architecture } from './types.js';
import { decoderHyperParameters, decoderShape, decoderTensorName, decoderTensors, flag, permuteQk } from './decoder.js';

export const llama: Architecture = {
  hfArchitectures: ['LlamaForCausalLM', 'LLaMAForCausalLM'],
  ggufArch: 'llama',
  shape: decoderShape,
  hyperParameters: (config, shape, file) => decoderHyperParameters('llama', config, shape, file, { ropeDims: true }),
  expectedTensors: (config, shape, file) => {
    const attentionBias = flag(config, 'attention_bias', file, false);
    return decoderTensors(config, shape, file, { qkvBias: attentionBias, outputBias: attentionBias, mlpBias: flag(config, 'mlp_bias', file, false) });
  },
  tensorName: decoderTensorName,
  transform: permuteQk,
};
