// The recipe as the rest of bake sees it, after schema validation and defaults.
// The JSON Schema in schema/recipe.schema.json is the source of truth for what users may write.

/** A target's name: free-form (`cpu`, `chat`, `embed`...); its `server.kind` says what it runs. */
export type TargetName = string;

/** ONNX INT8 / fp16 quantization, following onnxruntime's quantize_dynamic / quantize_static. */
export interface OnnxQuantSpec {
  format: 'onnx-int8' | 'onnx-fp16';
  /** dynamic = QOperator (DynamicQuantizeLinear + MatMulInteger...), static = QDQ with calibration. */
  mode?: 'dynamic' | 'static';
  /** Which ONNX files of the model to quantize (globs); default: onnx/model.onnx or model.onnx. */
  files?: string[];
  weight_type?: 'int8' | 'uint8';
  per_channel?: boolean;
  symmetric?: boolean;
  reduce_range?: boolean;
  op_types?: string[];
  nodes_include?: string[];
  nodes_exclude?: string[];
  /** Output name suffix in transformers.js's scheme: quantized (q8), int8, uint8, fp16. */
  dtype?: 'q8' | 'int8' | 'uint8' | 'fp16';
  /** Static mode: calibration samples (texts, real data files, or generated inputs of these shapes). */
  calibration?: { method?: 'minmax'; samples?: number; texts?: string; data?: DataSpec; inputs?: GeneratedInputsSpec };
  /** Fold constants with onnxruntime's basic optimizations before quantizing (default true for int8). */
  preprocess?: boolean;
}

/** GGUF conversion and quantization, following convert_hf_to_gguf.py and llama-quantize. */
export interface GgufQuantSpec {
  format: 'gguf';
  /** llama.cpp type or mix: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K Q4_K_M Q5_K_M. */
  type: string;
  /** Type of the converted GGUF the quantized file is made from and verified against (default F16). */
  source_type?: 'F32' | 'F16' | 'BF16';
}

/**
 * AWQ 4-bit (AutoAWQ / llm-compressor's algorithm, run on bake's CPU forward pass), written as a
 * checkpoint vLLM loads. Only LLaMA-family decoders (llama, mistral, qwen2) from safetensors.
 */
export interface AwqQuantSpec {
  format: 'awq';
  /** Layout: AutoAWQ GEMM (quant_method awq) or llm-compressor's compressed-tensors pack-quantized. */
  checkpoint?: 'autoawq-gemm' | 'compressed-tensors';
  /** Input features per quantization group (default 128). */
  group_size?: number;
  bits?: 4;
  zero_point?: true;
  /** What a shape the group does not divide gets: a smaller group for the model, or fp16 for the layer. */
  shape_rule?: 'smaller-group' | 'fp16';
  /** Layers no rule fits ship in fp16, listed in the checkpoint (default true); false makes them an error. */
  fp16_fallback?: boolean;
  /** Scale search: true x^a / w^(1-a) (AutoAWQ), false x^a, both (default: both grids, s = 1 included). */
  duo_scaling?: boolean | 'both';
  /** Clip search on the quantized linears except q/k (default true). */
  clip?: boolean;
  /** What feeds the next block: the quantized block's output (default) or the original's (AutoAWQ). */
  propagate?: 'quantized' | 'float';
  /** Calibration text (file relative to the recipe, one document a line; default the built-in set). */
  calibration?: { texts?: string; samples?: number; length?: number };
  /** onnxruntime threads for the forward passes (default: cores - 1). */
  threads?: number;
}

export type QuantSpec = OnnxQuantSpec | GgufQuantSpec | AwqQuantSpec | { format: 'none' };

/** Shapes and values for generated (non-text) model inputs: `dims` by dim name or `input:axis`. */
export interface GeneratedInputsSpec {
  dims?: Record<string, number>;
  values?: Record<string, number>;
  default_dim?: number;
}

/** How a data file becomes a model input tensor (schema definitions.preprocess). */
export interface PreprocessSpec {
  /** Images: [height, width] stretched, or keep_aspect (height fixed, width by aspect ratio up to width) and pad. */
  resize?: [number, number] | { height?: number; width?: number; keep_aspect?: boolean; pad?: boolean };
  /** value = (sample * scale - mean[c]) / std[c]; scale defaults to 1/255 for images, 1 for audio. */
  normalize?: { scale?: number; mean?: number[]; std?: number[] };
  layout?: 'NCHW' | 'NHWC';
  channels?: 'RGB' | 'BGR' | 'gray';
  pad_value?: number;
  /** Audio: resample to this rate. */
  sample_rate?: number;
  /** Audio: crop or zero-pad to this many samples. */
  length?: number;
}

/** A folder of real samples for verification or calibration (schema definitions.data). */
export interface DataSpec {
  /** Folder relative to the recipe; files are read in name order, not recursively. */
  path: string;
  kind: 'images' | 'audio' | 'npy';
  /** Model input the samples feed; default: the model's only float input. */
  input?: string;
  limit?: number;
  preprocess?: PreprocessSpec;
}

export interface VerifySpec {
  /** Generated inputs for models that take no text (ONNX). */
  inputs?: GeneratedInputsSpec;
  /** Eval text file (relative to the recipe) or a named built-in set. */
  eval?: string;
  /** Real evaluation samples for models that take no text (ONNX). */
  data?: DataSpec;
  /**
   * Decode an output before comparing (ctc: greedy CTC over [batch, time, classes]); with a dictionary (a file
   * of the model, one symbol per line after the blank) decodings are compared as text, edge spaces trimmed.
   */
  decode?: { type: 'ctc'; blank?: number; output?: string; dictionary?: string };
  /** Threshold of one-value outputs for decision_agreement (default 0.5 for scores in [0, 1], else 0). */
  decision_threshold?: number;
  runs?: number;
  min_cosine?: number;
  min_mean_cosine?: number;
  max_abs_error?: number;
  max_mean_abs_error?: number;
  min_top1?: number;
  min_spearman?: number;
  min_decision_agreement?: number;
  max_cer?: number;
  min_sequence_agreement?: number;
  max_size_ratio?: number;
  max_kld?: number;
  min_same_top?: number;
  max_ppl_ratio?: number;
  /** AWQ: mean KLD over round-to-nearest 4-bit's at the same group size (default 1: AWQ must not be worse). */
  max_kld_vs_rtn?: number;
  /**
   * GGUF embedding models: the least cosine between llama.cpp's embedding of the converted file and
   * onnxruntime's on the checkpoint's own ONNX export (default 0.999 when the export is locked).
   */
  min_onnx_cosine?: number;
  /** Skip verification altogether (the manifest says so). */
  skip?: boolean;
}

/** A sentence embedder: how token states become one vector per text (served by /embed, verified by pooled cosine). */
export interface EmbeddingSpec {
  pooling: 'mean' | 'cls';
  normalize: boolean;
  /** Prompt name -> text put before an input (e5: query / passage). */
  prefixes: Record<string, string>;
  /** Prompt name used when a request names none. */
  default_prefix?: string;
  /** Output holding the token states (default last_hidden_state, else the first rank-3 output). */
  output?: string;
  max_tokens: number;
}

/** A cross-encoder reranker: one logit per (query, passage) pair (served by /rerank, verified by ranking agreement). */
export interface RerankSpec {
  activation: 'sigmoid' | 'none';
  max_tokens: number;
}

export interface ModelSpec {
  id: string;
  /** Hub repo `org/name`; exclusive with `path`. */
  repo?: string;
  /** Local folder (relative to the recipe file, or `npm:<package>/<dir>`); exclusive with `repo`. */
  path?: string;
  revision: string;
  /** Glob patterns of the files to lock and pull. */
  files: string[];
  /** Pickle-based files (*.bin, *.pt, *.pkl, *.ckpt) accepted by exact name. */
  allow_pickle: string[];
  /** transformers.js task, for text models (feature-extraction, text-classification...). */
  task?: string;
  embedding?: EmbeddingSpec;
  rerank?: RerankSpec;
  quantize: QuantSpec;
  verify: VerifySpec;
  /** Which targets carry this model; default: every target of the recipe. */
  targets?: TargetName[];
}

/** What serves a target's models: onnxruntime in bake's runtime app, llama.cpp's server, vLLM, or nothing. */
export type ServerKind = 'onnx' | 'llama-server' | 'vllm' | 'none';
export const SERVER_KINDS: readonly ServerKind[] = ['onnx', 'llama-server', 'vllm', 'none'];

/** The container health check (Docker HEALTHCHECK): a GET of `path` on the server's port. */
export interface HealthSpec {
  path: string;
  /** Seconds. */
  interval: number;
  timeout: number;
  start_period: number;
  retries: number;
}

/** vLLM's run settings (server.settings of a vllm target), passed to `vllm serve` as flags. */
export interface VllmSettings {
  gpu_memory_utilization?: number;
  max_model_len?: number;
  tensor_parallel_size?: number;
  dtype?: 'auto' | 'half' | 'float16' | 'bfloat16' | 'float' | 'float32';
  /** Name clients ask for (default: the model id). */
  served_model_name?: string;
}

/** Host settings a server needs that an image cannot carry (compose file, docker run flags, inspect). */
export interface HostSettings {
  ipc: 'host';
  /** -1 = unlimited. */
  ulimits: { memlock: number; stack: number };
  /** GPUs to reserve: a count or all. */
  gpus: number | 'all';
}

/** A value of `server.settings`: a flag's value, or true/false for a switch. */
export type ServerSettingValue = string | number | boolean;

export interface ServerSpec {
  kind: ServerKind;
  /** Port the server listens on inside the container (EXPOSEd); none for kind none. */
  port?: number;
  /**
   * The run settings; they become the image's CMD, before `args`. llama-server: its flags by long name
   * (ctx-size, ubatch-size, cache-type-k, flash-attn, ...), checked against the flags of the bundled build
   * when the recipe loads; vllm: VllmSettings.
   */
  settings: Record<string, ServerSettingValue>;
  /** Extra command-line arguments for the server (llama-server / vLLM flags). */
  args: string[];
  /** Environment of the server process. */
  env: Record<string, string>;
  /**
   * onnx: the execution provider (cpu, or cuda on an NVIDIA CUDA runtime base); llama-server: a CUDA
   * build (a CUDA base, a GPU reserved in the compose file); vllm: always cuda.
   */
  device: 'cpu' | 'cuda';
  health?: HealthSpec;
  /** vllm: what the host must grant the container (derived from the kind and settings). */
  host?: HostSettings;
}

/** How `bake compose` runs a target in the fleet. */
export interface DeploySpec {
  /** Containers of this target (default 1; 0 leaves it out of the fleet). */
  replicas: number;
  restart: 'no' | 'always' | 'on-failure' | 'unless-stopped';
  /** Memory limit in Docker's notation (512m, 4g). */
  memory?: string;
  cpus?: number;
  /** Host port of the first replica (the others take the next ones); default: not published. */
  port?: number;
  /** GPUs reserved per replica (CUDA targets): a count, or all. */
  gpus?: number | 'all';
}

export interface TargetSpec {
  name: TargetName;
  /** Base image reference (a build ARG, BASE_IMAGE_<TARGET>, overrides it). */
  base: string;
  server: ServerSpec;
  /** Ids of the models this target carries, in recipe order. */
  models: string[];
  /** Image environment (besides the runtime contract's own variables). */
  env: Record<string, string>;
  deploy: DeploySpec;
}

export interface ImageSpec {
  name: string;
  version: string;
  /** Tag templates; placeholders {version}, {target}, {models}. */
  tags: string[];
  labels: Record<string, string>;
}

export interface Recipe {
  /** Recipe name (file name without .yaml). */
  name: string;
  /** Absolute path of the recipe file. */
  file: string;
  description?: string;
  models: ModelSpec[];
  targets: TargetSpec[];
  image: ImageSpec;
}
