// Test support for the K-quant and llama verification tests: a minimal GGUF v3 writer and reader, and
// builders for the two models those tests use (stories260K from its llama2.c checkpoint, and a random
// LLaMA whose rows are multiples of 256 so llama-quantize K-quantizes every weight).
// Independent of src/formats/gguf on purpose: the kernels' oracle must not share code with what it checks.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sharedModels } from './cli.js';

const run = promisify(execFile);

export const STORIES_DIR = join(sharedModels(), 'stories260K');
export const EVAL_TEXT = join(STORIES_DIR, 'eval.txt');

export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14 } as const;
/** [values per block, bytes per block] for the types these tests write or read. */
export const BLOCK: Record<number, [number, number]> = {
  0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 6: [32, 22], 7: [32, 24], 8: [32, 34], 12: [256, 144], 13: [256, 176], 14: [256, 210],
};

export type KvValue =
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'string'; value: string }
  | { type: 'strings'; value: string[] }
  | { type: 'f32s'; value: ArrayLike<number> }
  | { type: 'i32s'; value: ArrayLike<number> };

export interface TensorIn {
  name: string;
  /** ggml order: ne[0] (row length) first. */
  dims: number[];
  type: number;
  data: Uint8Array;
}

class Bytes {
  private chunks: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  concat(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export function encodeGguf(kv: Record<string, KvValue>, tensors: TensorIn[]): Buffer {
  const out = new Bytes();
  out.push(Buffer.from('GGUF'));
  out.u32(3);
  out.u64(tensors.length);
  out.u64(Object.keys(kv).length);
  for (const [key, v] of Object.entries(kv)) {
    out.str(key);
    switch (v.type) {
      case 'u32': out.u32(4); out.u32(v.value); break;
      case 'f32': { out.u32(6); const b = Buffer.alloc(4); b.writeFloatLE(v.value); out.push(b); break; }
      case 'string': out.u32(8); out.str(v.value); break;
      case 'strings': out.u32(9); out.u32(8); out.u64(v.value.length); for (const s of v.value) out.str(s); break;
      case 'f32s': out.u32(9); out.u32(6); out.u64(v.value.length); out.push(Buffer.from(Float32Array.from(v.value).buffer)); break;
      case 'i32s': out.u32(9); out.u32(5); out.u64(v.value.length); out.push(Buffer.from(Int32Array.from(v.value).buffer)); break;
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    out.str(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(t.type);
    offsets.push(offset);
    out.u64(offset);
    offset += Math.ceil(t.data.length / 32) * 32;
  }
  out.push(Buffer.alloc((32 - (out.size % 32)) % 32));
  for (const t of tensors) {
    out.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.length));
    out.push(Buffer.alloc((32 - (t.data.length % 32)) % 32));
  }
  return out.concat();
}

export interface TensorOut {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array;
}

/** Reads the tensors of a GGUF file (trusted test input: llama-quantize's output). */
export async function readGgufTensors(path: string): Promise<Map<string, TensorOut>> {
  const buf = await readFile(path);
  let p = 0;
  const u32 = (): number => { const v = buf.readUInt32LE(p); p += 4; return v; };
  const u64 = (): number => { const v = Number(buf.readBigUInt64LE(p)); p += 8; return v; };
  const str = (): string => { const n = u64(); const s = buf.toString('utf8', p, p + n); p += n; return s; };
  const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skipValue = (type: number): string | undefined => {
    if (type === 8) return str();
    if (type === 9) {
      const et = u32();
      const n = u64();
      for (let i = 0; i < n; i++) skipValue(et);
      return undefined;
    }
    const size = SIZES[type];
    if (size === undefined) throw new Error(`gguf ${path}: unknown kv type ${type} at ${p}`);
    p += size;
    return undefined;
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path} is not GGUF`);
  p = 4;
  u32();
  const nt = u64();
  const nkv = u64();
  let alignment = 32;
  for (let i = 0; i < nkv; i++) {
    const key = str();
    const type = u32();
    if (key === 'general.alignment') { alignment = buf.readUInt32LE(p); }
    skipValue(type);
  }
  const infos: { name: string; dims: number[]; type: number; offset: number }[] = [];
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const dims: number[] = [];
    for (let d = 0; d < nd; d++) dims.push(u64());
    const type = u32();
    infos.push({ name, dims, type, offset: u64() });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  const out = new Map<string, TensorOut>();
  for (const t of infos) {
    const [per, bytes] = BLOCK[t.type] ?? [0, 0];
    if (!per) throw new Error(`${path}: tensor ${t.name} has type ${t.type} this reader does not size`);
    const n = t.dims.reduce((a, b) => a * b, 1);
    const start = dataStart + t.offset;
    out.set(t.name, { name: t.name, dims: t.dims, type: t.type, data: buf.subarray(start, start + (n / per) * bytes) });
  }
  return out;
}

/** llama2.c tok512.bin -> GGUF tokenizer keys (as llama.cpp's convert-llama2c-to-ggml writes them). */
export async function stories260KVocab(): Promise<Record<string, KvValue>> {
  const buf = await readFile(join(STORIES_DIR, 'llama2c/tok512.bin'));
  let p = 4; // max_token_length
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  for (let id = 0; id < 512; id++) {
    scores.push(buf.readFloatLE(p));
    const len = buf.readUInt32LE(p + 4);
    let text = buf.toString('utf8', p + 8, p + 8 + len);
    p += 8 + len;
    let type = 1;
    if (id === 0) { text = '<unk>'; type = 2; }
    else if (id === 1) { text = '<s>'; type = 3; }
    else if (id === 2) { text = '</s>'; type = 3; }
    else if (text === '') type = 3;
    else if (/^<0x[0-9A-Fa-f]{2}>$/.test(text)) type = 6;
    tokens.push(text.replaceAll(' ', '\u2581'));
    types.push(type);
  }
  return {
    'tokenizer.ggml.model': { type: 'string', value: 'llama' },
    'tokenizer.ggml.tokens': { type: 'strings', value: tokens },
    'tokenizer.ggml.scores': { type: 'f32s', value: scores },
    'tokenizer.ggml.token_type': { type: 'i32s', value: types },
    'tokenizer.ggml.unknown_token_id': { type: 'u32', value: 0 },
    'tokenizer.ggml.bos_token_id': { type: 'u32', value: 1 },
    'tokenizer.ggml.eos_token_id': { type: 'u32', value: 2 },
  };
}

function llamaKv(h: { ctx: number; embd: number; ff: number; layers: number; heads: number; kvHeads: number }): Record<string, KvValue> {
  return {
    'general.architecture': { type: 'string', value: 'llama' },
    'general.name': { type: 'string', value: 'bake-test' },
    'llama.context_length': { type: 'u32', value: h.ctx },
    'llama.embedding_length': { type: 'u32', value: h.embd },
    'llama.block_count': { type: 'u32', value: h.layers },
    'llama.feed_forward_length': { type: 'u32', value: h.ff },
    'llama.rope.dimension_count': { type: 'u32', value: h.embd / h.heads },
    'llama.attention.head_count': { type: 'u32', value: h.heads },
    'llama.attention.head_count_kv': { type: 'u32', value: h.kvHeads },
    'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-5 },
    'general.file_type': { type: 'u32', value: 0 },
  };
}

const f32Bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** stories260K as an F32 GGUF, straight from the llama2.c checkpoint (already in GGUF's interleaved RoPE layout). */
export async function writeStories260KF32(path: string): Promise<string> {
  const buf = await readFile(join(STORIES_DIR, 'llama2c/stories260K.bin'));
  const hdr = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + 28));
  const [dim, hidden, layers, heads, kvHeads, vocab, seq] = Array.from(hdr) as [number, number, number, number, number, number, number];
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset + 28, buf.byteOffset + buf.length));
  let p = 0;
  const take = (n: number): Float32Array => { const a = all.subarray(p, p + n); p += n; return a; };
  const kvDim = (dim / heads) * kvHeads;
  const emb = take(vocab * dim);
  const rmsAtt = take(layers * dim);
  const wq = take(layers * dim * dim);
  const wk = take(layers * kvDim * dim);
  const wv = take(layers * kvDim * dim);
  const wo = take(layers * dim * dim);
  const rmsFfn = take(layers * dim);
  const w1 = take(layers * hidden * dim);
  const w2 = take(layers * dim * hidden);
  const w3 = take(layers * hidden * dim);
  const rmsFinal = take(dim);
  const tensors: TensorIn[] = [{ name: 'token_embd.weight', dims: [dim, vocab], type: 0, data: f32Bytes(emb) }];
  const slice = (a: Float32Array, l: number, n: number): Uint8Array => f32Bytes(a.subarray(l * n, (l + 1) * n));
  for (let l = 0; l < layers; l++) {
    tensors.push(
      { name: `blk.${l}.attn_norm.weight`, dims: [dim], type: 0, data: slice(rmsAtt, l, dim) },
      { name: `blk.${l}.attn_q.weight`, dims: [dim, dim], type: 0, data: slice(wq, l, dim * dim) },
      { name: `blk.${l}.attn_k.weight`, dims: [dim, kvDim], type: 0, data: slice(wk, l, kvDim * dim) },
      { name: `blk.${l}.attn_v.weight`, dims: [dim, kvDim], type: 0, data: slice(wv, l, kvDim * dim) },
      { name: `blk.${l}.attn_output.weight`, dims: [dim, dim], type: 0, data: slice(wo, l, dim * dim) },
      { name: `blk.${l}.ffn_norm.weight`, dims: [dim], type: 0, data: slice(rmsFfn, l, dim) },
      { name: `blk.${l}.ffn_gate.weight`, dims: [dim, hidden], type: 0, data: slice(w1, l, hidden * dim) },
      { name: `blk.${l}.ffn_down.weight`, dims: [hidden, dim], type: 0, data: slice(w2, l, dim * hidden) },
      { name: `blk.${l}.ffn_up.weight`, dims: [dim, hidden], type: 0, data: slice(w3, l, hidden * dim) },
    );
  }
  tensors.push({ name: 'output_norm.weight', dims: [dim], type: 0, data: f32Bytes(rmsFinal) });
  const kv = { ...llamaKv({ ctx: seq, embd: dim, ff: hidden, layers, heads, kvHeads }), ...(await stories260KVocab()) };
  await writeFile(path, encodeGguf(kv, tensors));
  return path;
}

/** Deterministic PRNG (mulberry32) with a Gaussian helper. */
export function rng(seed: number): { uniform(): number; normal(): number } {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { uniform, normal: () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()) };
}

/**
 * Rows of 256-value blocks covering the cases the kernels branch on: Gaussian, heavy outliers, all-positive,
 * all-negative, constant, all-zero sub-blocks, tiny values (fp16 subnormal scales), huge values, sparse.
 */
export function awkwardValues(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let b = 0; b < n / 256; b++) {
    const kind = b % 10;
    for (let i = 0; i < 256; i++) {
      const g = r.normal();
      let v: number;
      switch (kind) {
        case 0: v = g * 0.02; break;
        case 1: v = g * 0.05 * (r.uniform() < 0.02 ? 40 : 1); break;
        case 2: v = Math.abs(g) * 0.1 + 0.01; break;
        case 3: v = -Math.abs(g) * 0.3; break;
        case 4: v = i < 128 ? 0.125 : -3; break;
        case 5: v = (i >> 4) % 3 === 0 ? 0 : g; break;
        case 6: v = g * 1e-6; break;
        case 7: v = g * 3000; break;
        case 8: v = r.uniform() < 0.1 ? g : 0; break;
        default: v = Math.round(g * 4) / 8; break;
      }
      out[b * 256 + i] = v;
    }
  }
  return out;
}

export interface RandomLlamaShape { embd: number; ff: number; layers: number; heads: number; kvHeads: number }

/** The F32 weights of a random LLaMA (stories260K's 512-token vocabulary), tensor name -> values. */
export function randomLlamaWeights(shape: RandomLlamaShape, seed: number, awkward = true): TensorIn[] {
  const { embd, ff, layers, heads, kvHeads } = shape;
  const kvDim = (embd / heads) * kvHeads;
  let k = seed;
  const mat = (name: string, cols: number, rows: number): TensorIn => {
    const r = rng(++k);
    // Half the matrices are plain Gaussian (what a model looks like), half the awkward mix (what breaks
    // kernels). Without `awkward`, all Gaussian with a wider output layer, so next-token distributions
    // are peaked enough for KL divergence to tell quantization types apart.
    const std = name === 'output.weight' && !awkward ? 0.12 : 0.05;
    const vals = awkward && k % 2 === 0 ? awkwardValues(cols * rows, k) : Float32Array.from({ length: cols * rows }, () => r.normal() * std);
    return { name, dims: [cols, rows], type: 0, data: f32Bytes(vals) };
  };
  const norm = (name: string): TensorIn => ({ name, dims: [embd], type: 0, data: f32Bytes(new Float32Array(embd).fill(1)) });
  const tensors: TensorIn[] = [mat('token_embd.weight', embd, 512)];
  for (let l = 0; l < layers; l++) {
    tensors.push(
      norm(`blk.${l}.attn_norm.weight`),
      mat(`blk.${l}.attn_q.weight`, embd, embd),
      mat(`blk.${l}.attn_k.weight`, embd, kvDim),
      mat(`blk.${l}.attn_v.weight`, embd, kvDim),
      mat(`blk.${l}.attn_output.weight`, embd, embd),
      norm(`blk.${l}.ffn_norm.weight`),
      mat(`blk.${l}.ffn_gate.weight`, embd, ff),
      mat(`blk.${l}.ffn_down.weight`, ff, embd),
      mat(`blk.${l}.ffn_up.weight`, embd, ff),
    );
  }
  tensors.push(norm('output_norm.weight'), mat('output.weight', embd, 512));
  return tensors;
}

export async function randomLlamaKv(shape: RandomLlamaShape): Promise<Record<string, KvValue>> {
  return { ...llamaKv({ ctx: 512, ...shape }), ...(await stories260KVocab()) };
}

/** Bin directory of llama.cpp's own tools (builds them once; see scripts/llama-tools.sh). */
export async function llamaTools(): Promise<string> {
  const { stdout } = await run('bash', [join(import.meta.dirname, '../../scripts/llama-tools.sh')], { maxBuffer: 1 << 24, timeout: 3_600_000 });
  const bin = stdout.trim().split('\n').pop()!;
  if (!existsSync(join(bin, 'llama-quantize'))) throw new Error(`llama-tools.sh printed ${bin}, which has no llama-quantize`);
  return bin;
}

/** Runs llama-quantize --pure (one type for every quantizable tensor). */
export async function llamaQuantize(bin: string, src: string, dst: string, type: string, pure = true, extra: string[] = []): Promise<void> {
  const args = [...extra, ...(pure ? ['--pure'] : []), src, dst, type, '1'];
  await run(join(bin, 'llama-quantize'), args, { maxBuffer: 1 << 26 });
}

export interface LlamaPerplexityFigures { pplQ: number; pplBase: number; kldMean: number; sameTopPct: number }

/**
 * llama.cpp's own figures for `quant` against `base` on `evalFile`: llama-perplexity --kl-divergence-base
 * then --kl-divergence, one thread, chunks of `ctx`. Returns the "Mean PPL(Q)", "Mean PPL(base)",
 * "Mean KLD" and "Same top p" lines it prints.
 */
export async function llamaPerplexityKld(bin: string, base: string, quant: string, evalFile: string, ctx: number, workDir: string): Promise<LlamaPerplexityFigures> {
  const kld = join(workDir, `base-${ctx}.kld`);
  const common = ['-f', evalFile, '-c', String(ctx), '-t', '1', '--kl-divergence-base', kld];
  if (!existsSync(kld)) await run(join(bin, 'llama-perplexity'), ['-m', base, ...common], { maxBuffer: 1 << 26 });
  // llama.cpp's logger writes from a worker thread and may lose its last lines at exit (common/log.cpp:
  // "logs may be lost if not flushed before the program exits"); on a busy machine it happens, so rerun.
  let log = '';
  for (let attempt = 0; attempt < 5 && !/Mean PPL\(Q\)[\s\S]*Same top p:/.test(log); attempt++) {
    const { stdout, stderr } = await run(join(bin, 'llama-perplexity'), ['-m', quant, ...common, '--kl-divergence'], { maxBuffer: 1 << 26 });
    log = stdout + stderr;
  }
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(log);
    return m ? Number(m[1]) : undefined;
  };
  const summary = {
    pplQ: num(/Mean PPL\(Q\)\s*:\s*([\d.]+)/),
    pplBase: num(/Mean PPL\(base\)\s*:\s*([\d.]+)/),
    kldMean: num(/Mean\s+KLD:\s*(-?[\d.]+)/),
    sameTopPct: num(/Same top p:\s*([\d.]+)/),
  };
  if (Object.values(summary).every((v) => v !== undefined)) return summary as LlamaPerplexityFigures;
  // Summary lost even after retries: the table's row for the last chunk holds the same running means
  // (PPL(Q), ln(PPL(Q)/PPL(base)), KLD, delta-p RMS, same top), to 4-5 decimals.
  const chunks = num(/computing over (\d+) chunks/);
  const row = new RegExp(String.raw`^\s*${(chunks ?? 0) - 1}\s+([\d.]+) ±\s+[\d.]+\s+(-?[\d.]+) ±\s+[\d.]+\s+(-?[\d.]+) ±\s+[\d.]+\s+[\d.]+ ±\s+[\d.]+ %\s+([\d.]+) ±`, 'm').exec(log);
  if (!chunks || !row) throw new Error(`llama-perplexity output has neither its summary nor the last chunk's row:\n${log.slice(-2000)}`);
  const pplQ = Number(row[1]);
  return { pplQ, pplBase: pplQ / Math.exp(Number(row[2])), kldMean: Number(row[3]), sameTopPct: Number(row[4]) };
}
