// What an architecture contributes to HF -> GGUF conversion: its names, hyper-parameter keys, the tensors
// config.json calls for and the few it treats specially. Everything else (checking the checkpoint against
// the expected tensors, reading, ordering, quantizing, writing) is shared.
import type { GgufKv } from '../../formats/gguf/index.js';

export type HfConfig = Record<string, unknown>;

export interface ModelShape {
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nEmbd: number;
  nFf: number;
  vocabSize: number;
  /** Width of one attention head (config.json `head_dim`, else hidden_size / num_attention_heads). */
  headDim: number;
}

/** A tensor the checkpoint must (or, when optional, may) hold: its HF (row-major) shape. */
export interface ExpectedTensor {
  shape: number[];
  optional?: boolean;
}

export interface Architecture {
  /** config.json `architectures[0]` values this entry converts. */
  hfArchitectures: readonly string[];
  /** general.architecture in the GGUF file; also the prefix of its hyper-parameter keys. */
  ggufArch: string;
  shape(config: HfConfig, configFile: string): ModelShape;
  hyperParameters(config: HfConfig, shape: ModelShape, configFile: string): GgufKv[];
  /**
   * Every tensor config.json calls for, by HF name, in a stable order (globals, then layer by layer).
   * A checkpoint with a tensor missing, mis-shaped or not listed here (and not dropped) is refused.
   */
  expectedTensors(config: HfConfig, shape: ModelShape, configFile: string): Map<string, ExpectedTensor>;
  /** The config.json keys that size the tensors, as the tensor-set check names them (default: a LLaMA-style decoder's). */
  sizedBy?: { layers: string; all: string };
  /** GGUF tensor name for an HF tensor name; null to drop it (e.g. rotary caches); undefined if unknown. */
  tensorName(hfName: string): string | null | undefined;
  /** Rewrites a tensor's values on the way in (Q/K permutation); `shape` is the HF (row-major) shape. */
  transform?(ggufName: string, data: Float32Array, shape: readonly number[], modelShape: ModelShape): Float32Array;
  /**
   * The name a checkpoint tensor goes by before anything else sees it (BERT checkpoints of a task head
   * prefix `bert.`; old ones say gamma/beta for LayerNorm weight/bias). Default: the name as stored.
   */
  canonicalName?(hfName: string): string;
  /** Metadata read from the model folder besides config.json (an encoder's pooling, causal attention). */
  folderKvs?(dir: string, config: HfConfig, configFile: string): Promise<GgufKv[]>;
  /** The tokenizer's metadata, when it is not the SentencePiece / byte-level BPE reading decoders share. */
  tokenizerKvs?(dir: string, config: HfConfig): Promise<GgufKv[]>;
  /**
   * An encoder whose output is a text embedding (llama-server --embedding), not next-token logits: verify
   * compares embeddings for it.
   */
  embedding?: boolean;
}
