// Inputs for running a model: real samples from a data folder (src/data), real text through the model's own
// tokenizer for text models (text.ts), or generated from the declared input types and shapes (deterministic).
import * as ort from 'onnxruntime-node';
import { loadSamples, openDataset, type DataContext, type InputTarget } from '../../data/index.js';
import { DataType, toNumber, type ModelProto } from '../../formats/onnx/index.js';
import type { DataSpec, VerifySpec } from '../../recipe/types.js';
import { InputError } from '../../util/errors.js';
import { prng } from '../../util/prng.js';

export interface InputSpec {
  name: string;
  elemType: number;
  /** number for fixed dims, string for symbolic ones, undefined when unknown. */
  dims: (number | string | undefined)[];
}

/** The model's real inputs (graph inputs that are not initializers), with types and shapes. */
export function modelInputs(model: ModelProto): InputSpec[] {
  const inits = new Set(model.graph.initializer.map((t) => t.name));
  return model.graph.input.filter((v) => !inits.has(v.name)).map((v) => {
    const tt = v.type?.tensor_type;
    return {
      name: v.name,
      elemType: tt?.elem_type ?? DataType.FLOAT,
      dims: (tt?.shape?.dim ?? []).map((d) => (d.dim_param ? d.dim_param : d.dim_value !== undefined && d.dim_value !== null && toNumber(d.dim_value) > 0 ? toNumber(d.dim_value) : undefined)),
    };
  });
}

export type Feeds = Record<string, ort.Tensor>;

export { prng };

export interface GenerateOptions {
  /**
   * Values for symbolic dims, by dim name (`sequence`) or by `input:axis` (`state:1`, for unnamed dims).
   * Otherwise batch-like dims (axis 0, named batch/N/B, or the one free axis of a rank-3+ input) get 1
   * and the rest `defaultDim` (256).
   */
  dims?: Record<string, number>;
  defaultDim?: number;
  /** Fixed values for scalar/int inputs by input name (e.g. { sr: 16000 }). */
  values?: Record<string, number>;
}

/**
 * Inputs whose meaning fixes their value: a sample rate the graph supports, not noise; recurrent state,
 * which a stream starts at zero (random state drives LSTMs into saturation no real input reaches).
 */
const WELL_KNOWN_VALUES: Record<string, number> = { sr: 16000, sample_rate: 16000, sampling_rate: 16000, state: 0, h0: 0, c0: 0, initial_state: 0 };

const MAX_GENERATED_ELEMENTS = 2 ** 26;

const BATCH_LIKE = /^(batch(_size)?|n|b|.*DynamicDimension\.0)$/i;

function resolveDim(input: InputSpec, d: number | string | undefined, axis: number, opts: GenerateOptions): number {
  if (typeof d === 'number') return d;
  const named = opts.dims?.[`${input.name}:${axis}`] ?? (d ? opts.dims?.[d] : undefined);
  if (named !== undefined) return named;
  if (axis === 0 || (d && BATCH_LIKE.test(d))) return 1;
  // The only free axis of an otherwise fixed tensor (an RNN state [layers, batch, hidden]) is its batch.
  if (input.dims.filter((x) => typeof x !== 'number').length === 1 && input.dims.length >= 3) return 1;
  return opts.defaultDim ?? 256;
}

/** NCHW with 3 channels and some spatial extent: an image model. */
function isImage(shape: number[]): boolean {
  return shape.length === 4 && shape[1] === 3 && shape[2]! >= 16 && shape[3]! >= 16;
}

/**
 * A normalized (ImageNet mean/std) picture with structure instead of noise: a light page with dark bars
 * of varying size, like text lines and shapes. Vision models answer noise with near-constant outputs,
 * on which agreement metrics say nothing.
 */
function syntheticImage(d: Float32Array, shape: number[], rand: () => number): void {
  const [n, c, h, w] = shape as [number, number, number, number];
  const mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225];
  const pix = new Float32Array(h * w);
  for (let b = 0; b < n; b++) {
    pix.fill(0.92);
    const bars = 3 + Math.floor(rand() * 6);
    for (let k = 0; k < bars; k++) {
      const y0 = Math.floor(rand() * h), bh = 2 + Math.floor(rand() * Math.max(2, h / 10));
      const x0 = Math.floor(rand() * w), bw = 4 + Math.floor(rand() * Math.max(4, w / 2));
      const ink = 0.05 + rand() * 0.3;
      for (let y = y0; y < Math.min(h, y0 + bh); y++) for (let x = x0; x < Math.min(w, x0 + bw); x++) if ((x - x0) % 7 < 5) pix[y * w + x] = ink;
    }
    for (let ch = 0; ch < c; ch++) {
      const off = (b * c + ch) * h * w;
      for (let i = 0; i < h * w; i++) d[off + i] = (Math.min(1, Math.max(0, pix[i]! + (rand() - 0.5) * 0.04)) - mean[ch]!) / std[ch]!;
    }
  }
}

/** `count` sets of deterministic inputs for the declared shapes (floats uniform in [-1, 1), images synthetic). */
export function generateInputs(inputs: InputSpec[], count: number, opts: GenerateOptions = {}, seed = 1234): Feeds[] {
  const out: Feeds[] = [];
  for (let s = 0; s < count; s++) {
    const rand = prng(seed + s * 7919);
    const feeds: Feeds = {};
    for (const inp of inputs) {
      const shape = inp.dims.map((d, i) => resolveDim(inp, d, i, opts));
      const n = shape.reduce((a, b) => a * b, 1);
      // Shapes come from an untrusted file: refuse absurd ones instead of allocating them.
      if (!Number.isSafeInteger(n) || n > MAX_GENERATED_ELEMENTS) {
        throw new InputError(`input ${inp.name} would have shape [${shape.join(', ')}] (${n} values), too large to generate`, {
          field: 'verify.inputs', expected: `at most ${MAX_GENERATED_ELEMENTS} values per input`, hint: 'give smaller dims for its symbolic axes in verify.inputs.dims',
        });
      }
      const fixed = opts.values?.[inp.name] ?? WELL_KNOWN_VALUES[inp.name];
      switch (inp.elemType) {
        case DataType.FLOAT: {
          const d = new Float32Array(n);
          if (fixed === undefined && isImage(shape)) syntheticImage(d, shape, rand);
          else for (let i = 0; i < n; i++) d[i] = fixed ?? rand() * 2 - 1;
          feeds[inp.name] = new ort.Tensor('float32', d, shape);
          break;
        }
        case DataType.INT64: {
          const d = new BigInt64Array(n);
          for (let i = 0; i < n; i++) d[i] = BigInt(fixed ?? Math.floor(rand() * 2));
          feeds[inp.name] = new ort.Tensor('int64', d, shape);
          break;
        }
        case DataType.INT32: {
          const d = new Int32Array(n);
          for (let i = 0; i < n; i++) d[i] = fixed ?? Math.floor(rand() * 2);
          feeds[inp.name] = new ort.Tensor('int32', d, shape);
          break;
        }
        case DataType.BOOL: {
          feeds[inp.name] = new ort.Tensor('bool', new Uint8Array(n).fill(fixed === undefined ? 1 : fixed ? 1 : 0), shape);
          break;
        }
        default:
          throw new InputError(`input ${inp.name} has element type ${inp.elemType}, which bake cannot generate`, {
            field: 'verify', expected: 'float32, int64, int32 or bool inputs', hint: 'verify this model with text inputs or skip verification (verify.skip)',
          });
      }
    }
    out.push(feeds);
  }
  return out;
}

const TENSOR_TYPES: Record<number, InputTarget['dtype']> = { [DataType.FLOAT]: 'float32', [DataType.INT64]: 'int64', [DataType.INT32]: 'int32' };

/** The input real samples feed: the one the recipe names, else the model's only float input that is not state or a rate. */
export function dataInput(inputs: InputSpec[], name: string | undefined, field: string): InputTarget {
  const names = inputs.map((i) => i.name).join(', ');
  const pick = name !== undefined ? inputs.find((i) => i.name === name) : undefined;
  if (name !== undefined && !pick) throw new InputError(`${field}.input: the model has no input ${JSON.stringify(name)}`, { field: `${field}.input`, expected: `one of: ${names}` });
  const floats = inputs.filter((i) => i.elemType === DataType.FLOAT && !(i.name in WELL_KNOWN_VALUES));
  const input = pick ?? (floats.length === 1 ? floats[0]! : undefined);
  if (!input) {
    throw new InputError(`${field}: cannot tell which model input the samples feed (inputs: ${names})`, { field: `${field}.input`, expected: `one of: ${names}`, hint: `name it in ${field}.input` });
  }
  const dtype = TENSOR_TYPES[input.elemType];
  if (!dtype) throw new InputError(`${field}: model input ${input.name} has element type ${input.elemType}, which data files cannot fill`, { field: `${field}.input`, expected: 'a float32, int64 or int32 input' });
  return { name: input.name, dtype, dims: input.dims };
}

/**
 * One feed set per data file (batch 1): the data input decoded from the file, every other input generated
 * as for synthetic runs (well-known values such as a zero state or a sample rate, `opts` dims).
 */
export async function dataFeeds(inputs: InputSpec[], spec: DataSpec, ctx: DataContext, opts: GenerateOptions = {}, limit?: number): Promise<{ feeds: Feeds[]; files: string[]; digest: string }> {
  const ds = await openDataset(spec, ctx);
  const target = dataInput(inputs, spec.input, ctx.field);
  const samples = await loadSamples(ds, spec, target, ctx, limit);
  const others = inputs.filter((i) => i.name !== target.name);
  const feeds = samples.map((s, k) => ({ ...generateInputs(others, 1, opts, 4321 + k)[0], [target.name]: new ort.Tensor(target.dtype, s.data, s.dims) }));
  return { feeds, files: samples.map((s) => s.file), digest: ds.digest };
}

/** The recipe's snake_case input block as generator options. */
export function fromSpec(s: VerifySpec['inputs']): GenerateOptions | undefined {
  return s ? { dims: s.dims, values: s.values, defaultDim: s.default_dim } : undefined;
}
