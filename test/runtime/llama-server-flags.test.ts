// The committed flags table (src/runtime/llama-server/flags.json) is what the llama-server built here
// (scripts/llama-tools.sh, from the llama.cpp node-llama-cpp ships) prints for --help: when llama.cpp
// moves, this fails until `node --import tsx scripts/llama-server-flags.ts` regenerates the table.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { flagsOfBinary, serializeFlags } from '../../scripts/llama-server-flags.js';
import { FLAGS_FILE } from '../../src/runtime/llama-server/flags.js';
import { projectRoot } from '../support/cli.js';
import { llamaToolsBin } from '../support/gguf-fixtures.js';

test('flags.json matches the --help of the llama-server built here', { timeout: 30 * 60_000 }, async () => {
  const bin = await llamaToolsBin();
  const table = flagsOfBinary(bin);
  const committed = await readFile(join(projectRoot, FLAGS_FILE), 'utf8');
  assert.ok(table.flags.length > 150, 'the help was read');
  assert.equal(committed, serializeFlags(table), `${FLAGS_FILE} is stale: run node --import tsx scripts/llama-server-flags.ts`);
});
