// Writes src/runtime/llama-server/flags.json: the flags of the llama-server bake builds from the
// llama.cpp source node-llama-cpp ships (scripts/llama-tools.sh), read from its --help. Recipes'
// server.settings and server.args are checked against this table before anything is built.
//   node --import tsx scripts/llama-server-flags.ts           regenerate the table
//   node --import tsx scripts/llama-server-flags.ts --check   exit 1 when the table differs from the binary
import { execFileSync, spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseServerHelp } from '../src/runtime/llama-server/help.js';
import { FLAGS_FILE } from '../src/runtime/llama-server/flags.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The table the llama-server in `bin` gives: its build line and its flags. */
export function flagsOfBinary(bin: string): { build: string; flags: ReturnType<typeof parseServerHelp> } {
  const server = join(bin, 'llama-server');
  // --help and --version print to stdout; the log line "llama_server: initializing" goes to stderr.
  const help = execFileSync(server, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 << 20 });
  const v = spawnSync(server, ['--version'], { encoding: 'utf8' });
  const build = /version: .*/.exec(`${v.stdout}\n${v.stderr}`)?.[0] ?? 'unknown';
  return { build, flags: parseServerHelp(help) };
}

export function serializeFlags(table: { build: string; flags: unknown[] }): string {
  // One flag a line: a new llama.cpp shows in review as the flags that changed.
  const flags = table.flags.map((f) => `  ${JSON.stringify(f)}`).join(',\n');
  return `{\n "generatedBy": "scripts/llama-server-flags.ts from llama-server --help",\n "build": ${JSON.stringify(table.build)},\n "flags": [\n${flags}\n ]\n}\n`;
}

async function main(): Promise<void> {
  const bin = execFileSync('bash', [join(root, 'scripts', 'llama-tools.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop()!;
  const text = serializeFlags(flagsOfBinary(bin));
  const file = join(root, FLAGS_FILE);
  if (process.argv.includes('--check')) {
    const have = await readFile(file, 'utf8').catch(() => '');
    if (have !== text) {
      process.stderr.write(`${FLAGS_FILE} does not match ${bin}/llama-server --help: run node --import tsx scripts/llama-server-flags.ts\n`);
      process.exit(1);
    }
    process.stdout.write(`${FLAGS_FILE} matches ${bin}/llama-server\n`);
    return;
  }
  await writeFile(file, text);
  process.stdout.write(`wrote ${FLAGS_FILE}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
