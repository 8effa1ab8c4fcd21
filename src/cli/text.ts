// Plain-text rendering helpers for command results.

import { formatBytes } from '../util/units.js';

/** Columns padded to their widest cell. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** A metric value: integers and large values as they are, others to 5 significant digits. */
export function fmt(v: number | undefined): string {
  if (v === undefined) return '-';
  return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(v) : v.toPrecision(5);
}

/** Bytes in binary units (exact below 1 KiB). */
export const bytes = (n: number): string => formatBytes(n);
