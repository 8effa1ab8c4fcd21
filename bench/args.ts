// What every benchmark shares: numeric `--name value` options, the median of repeated runs, test data.
import { createCipheriv } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';

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

/** Incompressible, reproducible content (AES-CTR keystream), like quantized weights. */
export async function incompressibleFile(path: string, size: number): Promise<void> {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  const out = createWriteStream(path);
  const zeros = Buffer.alloc(8 << 20);
  for (let left = size; left > 0; left -= zeros.length) {
    if (!out.write(cipher.update(zeros.subarray(0, Math.min(zeros.length, left))))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}
