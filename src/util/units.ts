// Sizes for people. The exact byte count goes beside them where it matters.

/** 1536 -> "1.5 KiB" (binary units; exact below 1 KiB). */
export function formatBytes(n: number, digits = 1): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(digits)} ${units[u]}`;
}
