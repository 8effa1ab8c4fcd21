// LlamaForCausalLM: the reference decoder; Q and K rows are permuted to llama.cpp's interleaved RoPE.
import type { Architecture } from './types.js';
import { decoderHyperParameters, decoderShape, decoderTensorName, permuteQk } from './decoder.js';

export const llama: Architecture = {
  hfArchitectures: ['LlamaForCausalLM', 'LLaMAForCausalLM'],
  ggufArch: 'llama',
  shape: decoderShape,
  hyperParameters: (config, shape, file) => decoderHyperParameters('llama', config, shape, file, { ropeDims: true }),
  tensorName: decoderTensorName,
  transform: permuteQk,
};
