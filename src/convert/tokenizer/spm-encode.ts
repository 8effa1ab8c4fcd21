// SentencePiece BPE encoding as llama.cpp does it for "llama" vocabularies (llm_tokenizer_spm): spaces
// become U+2581 (with a leading one when the model adds a dummy prefix), the text starts as single
// characters, the adjacent pair whose concatenation is a piece with the highest score merges first (ties:
// leftmost), and a symbol that is no piece falls back to <0xXX> byte pieces. Used to tokenize calibration
// and eval text for models that ship only tokenizer.model (transformers.js needs tokenizer.json).
import { InputError } from '../../util/errors.js';
import type { SentencePieceModel } from './sentencepiece.js';

interface Symbol {
  text: string;
  prev: number;
  next: number;
}

interface Bigram {
  left: number;
  right: number;
  score: number;
  text: string;
}

/** A binary max-heap of bigrams: higher score first, then lower left index (llama.cpp's comparator). */
class BigramQueue {
  private readonly items: Bigram[] = [];
  private before(a: Bigram, b: Bigram): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }
  get size(): number {
    return this.items.length;
  }
  push(b: Bigram): void {
    const a = this.items;
    a.push(b);
    for (let i = a.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): Bigram {
    const a = this.items;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && this.before(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

export interface SpmEncoder {
  encode(text: string): number[];
}

export function sentencePieceEncoder(model: SentencePieceModel, file: string): SpmEncoder {
  if (model.modelType !== 2 && model.modelType !== 1) {
    throw new InputError(`${file}: SentencePiece model type ${model.modelType} cannot be encoded by bake`, { file, expected: 'a BPE (2) or UNIGRAM (1) SentencePiece model' });
  }
  const ids = new Map<string, number>();
  model.pieces.forEach((p, i) => { if (!ids.has(p.piece)) ids.set(p.piece, i); });
  const byteIds: number[] = [];
  for (let b = 0; b < 256; b++) {
    const id = ids.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    if (id === undefined) {
      throw new InputError(`${file}: the vocabulary has no byte piece <0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, { file, expected: 'a SentencePiece model with byte fallback (the LLaMA tokenizer has one)' });
    }
    byteIds.push(id);
  }
  const encoder = new TextEncoder();
  return {
    encode(text: string): number[] {
      if (!text) return [];
      const escaped = (model.addDummyPrefix ? ' ' + text : text).replaceAll(' ', '\u2581');
      const symbols: Symbol[] = [...escaped].map((ch, i, all) => ({ text: ch, prev: i - 1, next: i + 1 < all.length ? i + 1 : -1 }));
      const queue = new BigramQueue();
      const tryAdd = (left: number, right: number): void => {
        if (left < 0 || right < 0) return;
        const t = symbols[left]!.text + symbols[right]!.text;
        const id = ids.get(t);
        if (id === undefined) return;
        queue.push({ left, right, score: model.pieces[id]!.score, text: t });
      };
      for (let i = 1; i < symbols.length; i++) tryAdd(i - 1, i);
      while (queue.size) {
        const b = queue.pop();
        const l = symbols[b.left]!, r = symbols[b.right]!;
        // Stale: one side already merged into something else.
        if (!l.text || !r.text || l.text + r.text !== b.text) continue;
        l.text += r.text;
        r.text = '';
        l.next = r.next;
        if (r.next >= 0) symbols[r.next]!.prev = b.left;
        tryAdd(l.prev, b.left);
        tryAdd(b.left, l.next);
      }
      // Every merge forms a piece, so a final symbol is a piece or one character that is none: its UTF-8 bytes.
      const out: number[] = [];
      for (let i = 0; i !== -1 && i < symbols.length; i = symbols[i]!.next) {
        const t = symbols[i]!.text;
        if (!t) continue;
        const id = ids.get(t);
        if (id !== undefined) out.push(id);
        else for (const byte of encoder.encode(t)) out.push(byteIds[byte]!);
      }
      return out;
    },
  };
}
