// A model as the GGUF quantizer sees it: metadata plus tensors it can read on demand. Both the HF
// converter and a GGUF input produce one, so one quantize-and-write path serves conversion and requantize.
import type { GgufKv } from '../formats/gguf/index.js';

export interface SourceTensor {
  name: string;
  /** GGUF dims: ne[0] is the row length. */
  ne: number[];
  /** Stored type name from the type table (F32, F16 or BF16 for inputs we accept). */
  typeName: string;
  /**
   * The stored bytes (copied through when the target type equals the stored type). `into`, when given,
   * is a buffer of exactly that size the reader may fill and return instead of allocating one.
   */
  readRaw(into?: Uint8Array): Promise<Uint8Array>;
  /** The values widened to float32; `into` as for readRaw (one float per value). */
  readF32(into?: Float32Array): Promise<Float32Array>;
}

export interface ModelSource {
  /** general.architecture */
  arch: string;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  /** Metadata to carry into the output (general.file_type and quantization_version are set by the writer). */
  kvs: GgufKv[];
  tensors: SourceTensor[];
}
