// What every benchmark shares: numeric `--name value` options and the median of repeated runs.

/** `--name value` from the command line as a number, else `dflt`. */
export function numberOption(name: string, dflt: number, argv: string[] = process.argv.slice(2)): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v)) throw new Error(`--${name} takes a number, got ${JSON.stringify(argv[i + 1])}`);
  return v;
}

export function flagOption(name: string, argv: string[] = process.argv.slice(2)): boolean {
  return argv.includes(`--${name}`);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
