// Byte identity with llama.cpp's own llama-quantize: convert with our converter to F32, let llama-quantize
// quantize that file to every type, and compare with what our quantizer writes for the same type, whole
// files (metadata, tensor order, per-tensor types from the mix rules, and every data byte).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readGguf } from '../../../src/formats/gguf/index.js';
import { convertHfToGguf, ggmlTypeById, requantizeGguf, tensorBytes } from '../../../src/quant/gguf/index.js';
import { llamaPerplexity, llamaQuantize, llamaToolsBin, STORIES_EVAL, STORIES_HF, writeBpeTokenizer, writeRandomLlama } from '../../support/gguf-fixtures.js';

const TYPES = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K_M', 'Q5_K_M', 'Q6_K'];

let dir: string;
let bin: string;

/** Explains the first difference between two GGUF files: which tensor, or the header. */
async function explainDiff(ours: string, theirs: string): Promise<string> {
  const [a, b] = [await readFile(ours), await readFile(theirs)];
  let i = 0;
  while (i < Math.min(a.length, b.length) && a[i] === b[i]) i++;
  const g = await readGguf(theirs);
  const gOurs = await readGguf(ours);
  const types = (f: typeof g): string => f.tensors.map((t) => `${t.name}:${ggmlTypeById(t.type)?.name}`).join(' ');
  if (types(g) !== types(gOurs)) return `tensor types differ:\nours   ${types(gOurs)}\ntheirs ${types(g)}`;
  if (i < g.dataOffset) return `header differs at byte ${i} (sizes ${a.length} vs ${b.length})`;
  const rel = i - g.dataOffset;
  const t = g.tensors.filter((x) => x.offset <= rel).pop()!;
  const type = ggmlTypeById(t.type)!;
  const within = rel - t.offset;
  return `tensor ${t.name} (${type.name}, ${tensorBytes(type, t.dims)} bytes) differs at byte ${within} (block ${Math.floor(within / type.bytesPerBlock)}): ours ${a[i]} llama.cpp ${b[i]}`;
}

async function assertSameFile(ours: string, theirs: string): Promise<void> {
  const [a, b] = [await readFile(ours), await readFile(theirs)];
  if (!a.equals(b)) assert.fail(await explainDiff(ours, theirs));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-gguf-oracle-'));
  bin = await llamaToolsBin();
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const MODELS = [
  { label: 'stories260K (rows 64 and 172: fallbacks)', make: async (): Promise<string> => STORIES_HF },
  {
    label: 'random LLaMA (rows multiple of 256, untied output, 8 layers)',
    make: async (): Promise<string> => {
      const d = join(dir, 'random-hf');
      await writeRandomLlama(d, { embd: 256, ff: 256, layers: 8, heads: 4, kvHeads: 2, vocab: 512, tied: false });
      return d;
    },
  },
];

for (const model of MODELS) {
  describe(`llama-quantize byte identity: ${model.label}`, () => {
    let hf: string;
    let f32: string;
    let tag: string;
    before(async () => {
      hf = await model.make();
      tag = hf === STORIES_HF ? 'stories' : 'random';
      f32 = join(dir, `${tag}-F32.gguf`);
      await convertHfToGguf(hf, f32, { type: 'F32' });
    });

    for (const type of TYPES) {
      test(`${type}: requantizeGguf(our F32) == llama-quantize(our F32)`, async () => {
        const theirs = join(dir, `${tag}-${type}-llama.gguf`);
        const ours = join(dir, `${tag}-${type}-ours.gguf`);
        await llamaQuantize(bin, f32, theirs, type);
        const r = await requantizeGguf(f32, ours, { type, threads: 2 });
        await assertSameFile(ours, theirs);
        assert.equal(r.bytes, (await readFile(theirs)).length);
      });
    }

    test('convertHfToGguf straight to Q4_K_M equals requantizing the F32 file', async () => {
      const direct = join(dir, `${tag}-direct-Q4_K_M.gguf`);
      await convertHfToGguf(hf, direct, { type: 'Q4_K_M', threads: 2 });
      await assertSameFile(direct, join(dir, `${tag}-Q4_K_M-llama.gguf`));
    });

    test('F16 input: requantizeGguf(F16) == llama-quantize(F16) for Q8_0 and Q4_K_M', async () => {
      const f16 = join(dir, `${tag}-F16-ours.gguf`);
      for (const type of ['Q8_0', 'Q4_K_M']) {
        const theirs = join(dir, `${tag}-f16in-${type}-llama.gguf`);
        const ours = join(dir, `${tag}-f16in-${type}-ours.gguf`);
        await llamaQuantize(bin, f16, theirs, type);
        await requantizeGguf(f16, ours, { type });
        await assertSameFile(ours, theirs);
      }
    });
  });
}

describe('llama-quantize byte identity: random Qwen2 with a BPE tokenizer', () => {
  test('Q8_0 and Q4_K_M', async () => {
    const hf = join(dir, 'qwen2-hf');
    await writeRandomLlama(hf, { embd: 256, ff: 256, layers: 2, heads: 4, kvHeads: 2, vocab: 300, tied: true, arch: 'qwen2' }, 4);
    await writeBpeTokenizer(hf, 'qwen2', 300);
    const f32 = join(dir, 'qwen2-F32.gguf');
    await convertHfToGguf(hf, f32, { type: 'F32' });
    for (const type of ['Q8_0', 'Q4_K_M']) {
      const theirs = join(dir, `qwen2-${type}-llama.gguf`);
      const ours = join(dir, `qwen2-${type}-ours.gguf`);
      await llamaQuantize(bin, f32, theirs, type);
      await convertHfToGguf(hf, ours, { type });
      await assertSameFile(ours, theirs);
    }
  });
});

describe('llama.cpp runs our GGUF', () => {
  test('stories260K F32 and Q8_0 from our converter: low perplexity on eval.txt, Q8_0 close to F32', async () => {
    const f32 = join(dir, 'stories-F32.gguf');
    const q8 = join(dir, 'stories-Q8_0-ours.gguf');
    const pF32 = await llamaPerplexity(bin, f32, STORIES_EVAL);
    const pQ8 = await llamaPerplexity(bin, q8, STORIES_EVAL);
    // A wrong Q/K permutation or vocabulary sends a 512-token model's perplexity into the hundreds.
    assert.ok(pF32 > 1 && pF32 < 20, `F32 perplexity ${pF32}`);
    assert.ok(Math.abs(pQ8 / pF32 - 1) < 0.02, `Q8_0 perplexity ${pQ8} vs F32 ${pF32}`);
  });
});
