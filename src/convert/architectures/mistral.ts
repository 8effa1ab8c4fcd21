// MistralForCausalLM: a LLaMA for llama.cpp (convert_hf_to_gguf.py maps it to the llama architecture).
import type { Architecture } from './types.js';
import { llama } from './llama.js';

export const mistral: Architecture = {
  ...llama,
  hfArchitectures: ['MistralForCausalLM'],
};
