// What an architecture contributes to HF -> GGUF conversion: its names, hyper-parameter keys and the
// few tensors it treats specially. Everything else (reading, ordering, quantizing, writing) is shared.
import type { GgufKv } from '../../formats/gguf/index.js';

export type HfConfig = Record<string, unknown>;

export interface ModelShape {
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nEmbd: number;
  nFf: number;
  vocabSize: number;
}

export interface Architecture {
  /** config.json `architectures[0]` values this entry converts. */
  hfArchitectures: readonly string[];
  /** general.architecture in the GGUF file; also the prefix of its hyper-parameter keys. */
  ggufArch: string;
  shape(config: HfConfig, configFile: string): ModelShape;
  hyperParameters(config: HfConfig, shape: ModelShape, configFile: string): GgufKv[];
  /** GGUF tensor name for an HF tensor name; null to drop it (e.g. rotary caches); undefined if unknown. */
  tensorName(hfName: string): string | null | undefined;
  /** Rewrites a tensor's values on the way in (Q/K permutation); `shape` is the HF (row-major) shape. */
  transform?(ggufName: string, data: Float32Array, shape: readonly number[], modelShape: ModelShape): Float32Array;
}
