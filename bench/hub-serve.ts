// The loopback Hub in its own process for bench/hub-download.ts and bench/hub-parallel.ts, so the server
// and the client under measurement do not share one event loop. Started with child_process.fork
// (args: the file to serve, [--rate <bytes per second per connection>]); talks over IPC:
//   parent -> { type: 'faults', faults }   replaces the fault list
//   parent -> { type: 'stats' }            answered { type: 'stats', bytesFor, requests }
//   parent -> { type: 'close' }
// On start it sends { type: 'ready', url, commit }.
import { startHubServer, type HubFault } from '../test/support/hub-server.js';

const file = process.argv[2];
const repoPath = 'big.safetensors';
const rateAt = process.argv.indexOf('--rate');
const rate = rateAt > 0 ? Number(process.argv[rateAt + 1]) : undefined;
if (!file || !process.send) {
  console.error('usage: forked by bench/hub-download.ts with the file to serve');
  process.exit(2);
}
const hub = await startHubServer({ repos: { 'bench/big': { files: { [repoPath]: { file } } } }, ...(rate ? { connectionBytesPerSecond: rate } : {}) });
process.on('message', async (msg: { type: string; faults?: HubFault[] }) => {
  if (msg.type === 'faults') {
    hub.faults.splice(0, hub.faults.length, ...(msg.faults ?? []));
    hub.stats.reset();
    process.send!({ type: 'faults-set' });
  } else if (msg.type === 'stats') {
    process.send!({ type: 'stats', bytesFor: hub.stats.bytesFor(repoPath), requests: hub.stats.requests.length });
  } else if (msg.type === 'close') {
    await hub.close();
    process.exit(0);
  }
});
process.send({ type: 'ready', url: hub.url, commit: hub.commitOf('bench/big') });
