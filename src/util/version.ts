// bake's own version, from its package.json (one place; the CLI's --version and the reports read it).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

let version: string | undefined;

export function bakeVersion(): string {
  // src/util/ and dist/util/ both sit two folders below package.json.
  version ??= String((JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version?: unknown }).version);
  return version;
}
