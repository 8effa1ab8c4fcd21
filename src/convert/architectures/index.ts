// Registry of architectures the HF -> GGUF converter knows; one small file each (decoders: llama, mistral,
// qwen2; text-embedding encoders: bert, nomic-bert).
import { InputError } from '../../util/errors.js';
import { bert } from './bert.js';
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { nomicBert } from './nomic-bert.js';
import { qwen2 } from './qwen2.js';
import type { Architecture } from './types.js';

export type { Architecture, ExpectedTensor, HfConfig, ModelShape } from './types.js';
export { POOLING_TYPES, type PoolingName } from './encoder.js';

export const ARCHITECTURES: readonly Architecture[] = [llama, mistral, qwen2, bert, nomicBert];

/** general.architecture values of text-embedding encoders (verified by their embeddings, served with --embedding). */
export const EMBEDDING_ARCHS: readonly string[] = ARCHITECTURES.filter((a) => a.embedding).map((a) => a.ggufArch);

export function architectureFor(config: Record<string, unknown>, configFile: string): Architecture {
  const names = config.architectures;
  const name = Array.isArray(names) && typeof names[0] === 'string' ? names[0] : undefined;
  const known = ARCHITECTURES.flatMap((a) => a.hfArchitectures);
  const arch = ARCHITECTURES.find((a) => name !== undefined && a.hfArchitectures.includes(name));
  if (!arch) {
    throw new InputError(`${configFile}: architecture ${JSON.stringify(name ?? null)} is not supported by the GGUF converter`, {
      file: configFile, field: 'architectures[0]', expected: `one of ${known.join(', ')}`,
      hint: 'use a model of a supported architecture, or a ready-made GGUF file',
    });
  }
  return arch;
}
