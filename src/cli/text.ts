// Plain-text rendering helpers for command results.

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
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}
