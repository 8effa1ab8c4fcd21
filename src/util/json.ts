// Canonical JSON: sorted keys, no undefined, stable bytes; used for lockfiles, keys and reports.

function normalize(value: unknown): unknown {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) return null;
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : normalize(v)));
  if (ArrayBuffer.isView(value)) throw new TypeError('canonicalJson: typed arrays are not JSON');
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value as object).sort()) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = normalize(v);
  }
  return out;
}

/** One line, sorted keys: for digests. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(normalize(value));
}

/** Indented, sorted keys, trailing newline: for files people read and diff. */
export function prettyJson(value: unknown): string {
  return JSON.stringify(normalize(value), null, 2) + '\n';
}
