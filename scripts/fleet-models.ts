// The stand-in models of recipes/chat-llamacpp.yaml (no Hub here): writes them into
// .bake/fleet-models/<org>/<name>/ (deterministic); with --serve, also serves them under their real repo
// names from the loopback test Hub until interrupted, so the recipe locks, pulls and builds as from the Hub:
//   node --import tsx scripts/fleet-models.ts --serve &     # prints HF_ENDPOINT=http://127.0.0.1:<port>
//   HF_ENDPOINT=http://127.0.0.1:<port> bake lock chat-llamacpp --check && bake verify chat-llamacpp
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fleetHubRepos, writeFleetModels } from '../test/support/fleet-models.js';
import { startHubServer } from '../test/support/hub-server.js';

const root = join(fileURLToPath(new URL('..', import.meta.url)), '.bake', 'fleet-models');
if (process.argv.includes('--serve')) {
  const hub = await startHubServer({ repos: await fleetHubRepos(root) });
  process.stdout.write(`HF_ENDPOINT=${hub.url}\n`);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void hub.close().then(() => process.exit(0)));
} else {
  for (const [repo, dir] of Object.entries(await writeFleetModels(root))) process.stdout.write(`${repo} -> ${dir}\n`);
}
