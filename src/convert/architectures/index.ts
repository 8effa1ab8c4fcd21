// Registry of architectures the HF -> GGUF converter knows; one small file each.
import { InputError } from '../../util/errors.js';
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { qwen2 } from './qwen2.js';
import type { Architecture } from './types.js';

export type { Architecture, ExpectedTensor, HfConfig, ModelShape } from './types.js';

export const ARCHITECTURES: readonly Architecture[] = [llama, mistral, qwen2];

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
