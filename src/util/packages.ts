// Where an installed npm package lives, and its version: packages with an `exports` map hide
// package.json from require.resolve, and some ship nested package.json files (dist/cjs/package.json),
// so walk up from the entry to the package.json that carries the package's name.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

function readName(file: string): { name?: string; version?: string } | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
  } catch {
    return undefined;
  }
}

export function packageDir(name: string): string {
  let dir = dirname(require.resolve(name));
  for (;;) {
    if (readName(join(dir, 'package.json'))?.name === name) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the package folder of ${name}`);
    dir = up;
  }
}

export function packageVersion(name: string): string {
  return String(readName(join(packageDir(name), 'package.json'))!.version);
}
