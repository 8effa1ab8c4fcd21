// Test support for the GGUF tests: a safetensors writer, a random LLaMA checkpoint in Hugging Face layout
// (rows that are multiples of 256 so every K type is exercised), and the llama.cpp oracle tools.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot, sharedModels } from './cli.js';

const run = promisify(execFile);

export const STORIES_HF = join(sharedModels(), 'stories260K', 'hf');
export const STORIES_EVAL = join(sharedModels(), 'stories260K', 'eval.txt');

export interface StTensor {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  data: Uint8Array;
}

/** Encodes a safetensors file (header JSON padded with spaces to 8 bytes, as the reference writer does). */
export function encodeSafetensors(tensors: StTensor[], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]);
}

/** Deterministic PRNG (mulberry32) with a Box-Muller normal. */
export function rng(seed: number): { uniform(): number; normal(): number } {
  let a = seed >>> 0;
  const uniform = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

/** Weight-like values plus awkward blocks: all zero, constant, one outlier, ties at the block max, tiny values. */
export function weights(n: number, seed: number, scale = 0.05): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r.normal() * scale;
  const blocks = Math.floor(n / 256);
  for (let b = 0; b < blocks; b += 7) {
    const at = b * 256;
    switch ((b / 7) % 5) {
      case 0: out.fill(0, at, at + 32); break;
      case 1: out.fill(0.0125, at, at + 32); break;
      case 2: out[at + 3] = 3.5; break;
      case 3: out[at + 1] = -0.2; out[at + 9] = 0.2; break;
      case 4: for (let j = 0; j < 32; j++) out[at + j] = (r.normal() * 1e-6); break;
    }
  }
  return out;
}

export interface RandomLlamaShape {
  embd: number;
  ff: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  tied: boolean;
  dtype?: 'F32' | 'F16' | 'BF16';
  /** qwen2 adds Q/K/V biases and uses Qwen2ForCausalLM. */
  arch?: 'llama' | 'qwen2';
}

function encode(values: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    if (dtype === 'BF16') out[i] = bits[i]! >>> 16; // truncation is fine for a fixture
    else out[i] = halfOf(values[i]!);
  }
  return new Uint8Array(out.buffer);
}

function halfOf(v: number): number {
  // Fixture-only conversion (truncating); the reader widens whatever bits are stored.
  const f = new Float32Array([v]);
  const w = new Uint32Array(f.buffer)[0]!;
  const sign = (w >>> 16) & 0x8000;
  const e = ((w >>> 23) & 0xff) - 127 + 15;
  if (e <= 0) return sign;
  if (e >= 31) return sign | 0x7bff;
  return sign | (e << 10) | ((w >>> 13) & 0x3ff);
}

/** Writes a random LlamaForCausalLM checkpoint with stories260K's tokenizer (vocab 512). */
export async function writeRandomLlama(dir: string, s: RandomLlamaShape, seed = 1, opts: { shards?: number; tokenizer?: 'stories' | 'none' } = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  const dtype = s.dtype ?? 'F32';
  const kvDim = (s.embd / s.heads) * s.kvHeads;
  const tensors: StTensor[] = [];
  let k = seed * 1000;
  const add = (name: string, shape: number[], norm = false): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = norm ? Float32Array.from(weights(n, k++, 0.1), (v) => 1 + v) : weights(n, k++);
    tensors.push({ name, dtype, shape, data: encode(values, dtype) });
  };
  add('model.embed_tokens.weight', [s.vocab, s.embd]);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [s.embd], true);
    add(`${p}self_attn.q_proj.weight`, [s.embd, s.embd]);
    add(`${p}self_attn.k_proj.weight`, [kvDim, s.embd]);
    add(`${p}self_attn.v_proj.weight`, [kvDim, s.embd]);
    add(`${p}self_attn.o_proj.weight`, [s.embd, s.embd]);
    if (s.arch === 'qwen2') {
      add(`${p}self_attn.q_proj.bias`, [s.embd]);
      add(`${p}self_attn.k_proj.bias`, [kvDim]);
      add(`${p}self_attn.v_proj.bias`, [kvDim]);
    }
    add(`${p}post_attention_layernorm.weight`, [s.embd], true);
    add(`${p}mlp.gate_proj.weight`, [s.ff, s.embd]);
    add(`${p}mlp.up_proj.weight`, [s.ff, s.embd]);
    add(`${p}mlp.down_proj.weight`, [s.embd, s.ff]);
  }
  add('model.norm.weight', [s.embd], true);
  if (!s.tied) add('lm_head.weight', [s.vocab, s.embd]);
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    await writeFile(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  } else {
    const weightMap: Record<string, string> = {};
    const per = Math.ceil(tensors.length / shards);
    for (let i = 0; i < shards; i++) {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = tensors.slice(i * per, (i + 1) * per);
      for (const t of part) weightMap[t.name] = name;
      await writeFile(join(dir, name), encodeSafetensors(part));
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }
  const config = {
    architectures: [s.arch === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'], model_type: s.arch ?? 'llama', hidden_size: s.embd, intermediate_size: s.ff,
    num_hidden_layers: s.layers, num_attention_heads: s.heads, num_key_value_heads: s.kvHeads, vocab_size: s.vocab,
    max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: s.tied, bos_token_id: 1, eos_token_id: 2,
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  if (opts.tokenizer === 'none') return; // the caller writes one (writeBpeTokenizer)
  for (const f of ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json']) await copyFile(join(STORIES_HF, f), join(dir, f));
}

/** GPT-2's byte -> printable character map (byte-level BPE vocabularies are written in it). */
function byteChars(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + extra++);
  return out;
}

/** Replaces the SentencePiece tokenizer with a small byte-level BPE tokenizer.json (Llama 3 / Qwen2 style). */
export async function writeBpeTokenizer(dir: string, pre: 'llama-bpe' | 'qwen2', vocabSize: number): Promise<void> {
  const { unlink } = await import('node:fs/promises');
  await unlink(join(dir, 'tokenizer.model')).catch(() => undefined);
  const chars = byteChars();
  const vocab: Record<string, number> = {};
  chars.forEach((c, i) => { vocab[c] = i; });
  const merges: [string, string][] = [];
  const words = ['th', 'he', 'in', 'er', 'an', 'Ġt', 'Ġa', 'on', 'at', 'en'];
  for (const w of words) {
    const [a, b] = w === 'Ġt' || w === 'Ġa' ? ['Ġ', w[1]!] : [w[0]!, w[1]!];
    vocab[a + b] = Object.keys(vocab).length;
    merges.push([a, b]);
  }
  const special = vocabSize - 2;
  const pattern = pre === 'qwen2'
    ? "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
    : "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const tokenizer = {
    version: '1.0',
    added_tokens: [
      { id: special, content: '<|endoftext|>', special: true },
      { id: special + 1, content: '<|im_start|>', special: true },
    ],
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] },
    model: { type: 'BPE', vocab, merges },
  };
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: null, eos_token: '<|endoftext|>', add_bos_token: false }));
}

/** llama.cpp's bin dir (builds once; blocks while another build holds the lock). */
export async function llamaToolsBin(): Promise<string> {
  const { stdout } = await run('bash', [join(projectRoot, 'scripts', 'llama-tools.sh')], { maxBuffer: 1 << 24, timeout: 30 * 60_000 });
  return stdout.trim().split('\n').pop()!;
}

export async function llamaQuantize(bin: string, src: string, dst: string, type: string, threads = 1): Promise<void> {
  await run(join(bin, 'llama-quantize'), [src, dst, type, String(threads)], { maxBuffer: 1 << 26 });
}

/** Final perplexity estimate of llama-perplexity over a text file. */
export async function llamaPerplexity(bin: string, model: string, textFile: string, ctx = 128): Promise<number> {
  // llama.cpp logs from a background thread and sometimes loses the last lines at exit (exit code 0, no
  // numbers): run again, up to three times, before calling it a failure.
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const { stdout, stderr } = await run(join(bin, 'llama-perplexity'), ['-m', model, '-f', textFile, '-c', String(ctx), '-t', '1', '--no-warmup'], { maxBuffer: 1 << 26 });
    const m = /Final estimate: PPL = ([0-9.]+)/.exec(stdout + stderr);
    if (m) return Number(m[1]);
    // The running estimate after the last chunk ([N]value on stdout) is the same number, if chunk N made it.
    const total = /perplexity over (\d+) chunks/.exec(stderr)?.[1];
    const lastChunk = [...stdout.matchAll(/\[(\d+)\]([0-9.]+),/g)].find((c) => c[1] === total);
    if (lastChunk) return Number(lastChunk[2]);
    last = (stdout + stderr).slice(-2000);
  }
  throw new Error(`llama-perplexity printed no estimate in three runs:\n${last}`);
}
