// Agreement metrics between a reference and a quantized model's outputs.

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i]! * b[i]!; na += a[i]! * a[i]!; nb += b[i]! * b[i]!; }
  if (na === 0 && nb === 0) return 1;
  if (na === 0 || nb === 0) return 0;
  return dot / Math.sqrt(na * nb);
}

export function maxAbsError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) { const d = Math.abs(a[i]! - b[i]!); if (d > m || Number.isNaN(d)) m = d; }
  return m;
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

/** Average ranks (ties share their mean rank), as Spearman's rho needs. */
function ranks(a: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: a.length }, (_, i) => i).sort((x, y) => a[x]! - a[y]!);
  const r = new Float64Array(a.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && a[idx[j + 1]!] === a[idx[i]!]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) r[idx[k]!] = rank;
    i = j + 1;
  }
  return r;
}

/** Spearman rank correlation: Pearson correlation of the ranks. 1 when both are constant. */
export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const ra = ranks(a), rb = ranks(b);
  const n = ra.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) { ma += ra[i]!; mb += rb[i]!; }
  ma /= n; mb /= n;
  let cov = 0, va = 0, vb = 0;
  for (let i = 0; i < n; i++) { const x = ra[i]! - ma, y = rb[i]! - mb; cov += x * y; va += x * x; vb += y * y; }
  if (va === 0 && vb === 0) return 1;
  if (va === 0 || vb === 0) return 0;
  return cov / Math.sqrt(va * vb);
}

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return Number.NaN;
  const pos = (s.length - 1) * p;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/**
 * Greedy CTC decoding of one [time, classes] row block: the best class per step, repeats collapsed,
 * blanks dropped (what PaddleOCR's CTCLabelDecode and wav2vec2's argmax decoding do).
 */
export function ctcGreedy(scores: ArrayLike<number>, steps: number, classes: number, blank = 0): number[] {
  const out: number[] = [];
  let prev = -1;
  for (let t = 0; t < steps; t++) {
    let best = 0;
    const base = t * classes;
    for (let c = 1; c < classes; c++) if (scores[base + c]! > scores[base + best]!) best = c;
    if (best !== prev && best !== blank) out.push(best);
    prev = best;
  }
  return out;
}

/** Levenshtein distance between two symbol sequences (insertions, deletions, substitutions cost 1). */
export function editDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length]!;
}
