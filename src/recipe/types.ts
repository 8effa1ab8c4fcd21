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

export type QuantSpec = OnnxQuantSpec | GgufQuantSpec | { format: 'none' };

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
  /**
   * GGUF embedding models: the least cosine between llama.cpp's embedding of the converted file and
   * onnxruntime's on the checkpoint's own ONNX export (default 0.999 when the export is locked).
   */
  min_onnx_cosine?: number;
  /** Skip verification altogether (the manifest says so). */
  skip?: boolean;
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

/** A value of `server.settings`: a flag's value, or true/false for a switch. */
export type ServerSettingValue = string | number | boolean;

export interface ServerSpec {
  kind: ServerKind;
  /** Port the server listens on inside the container (EXPOSEd); none for kind none. */
  port?: number;
  /**
   * llama-server: its flags by long name (ctx-size, ubatch-size, cache-type-k, flash-attn, ...), checked
   * against the flags of the bundled build when the recipe loads; they become the image's CMD, before `args`.
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
