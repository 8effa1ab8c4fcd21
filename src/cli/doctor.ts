// `bake doctor`: one line per thing bake depends on, each ok / warn / fail with how to fix it.
import { hubConfigFromEnv } from '../hub/config.js';
import { defaultStoreRoot, Store } from '../store/store.js';
import { freeBytes } from '../util/fs.js';
import type { ExitCodeName } from '../util/errors.js';
import type { RunInput } from './types.js';

interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

export async function runDoctor(input: RunInput): Promise<{ value: unknown; text: string; exit: ExitCodeName }> {
  const checks: Check[] = [];
  const hub = hubConfigFromEnv(process.env);
  checks.push({ name: 'hub endpoint', status: 'ok', detail: `${hub.endpoint}${hub.offline ? ' (HF_HUB_OFFLINE=1: cache only)' : ''}` });
  checks.push(hub.token ? { name: 'hub token', status: 'ok', detail: 'HF_TOKEN is set (never written to disk, logs, lock or image)' } : { name: 'hub token', status: 'warn', detail: 'HF_TOKEN is not set', fix: 'private or gated repos need HF_TOKEN=hf_...' });
  checks.push({ name: 'hub cache', status: 'ok', detail: hub.cacheDir });
  const store = new Store(input.globals.store ?? defaultStoreRoot());
  const free = await freeBytes(store.root);
  checks.push(
    free === undefined
      ? { name: 'disk', status: 'warn', detail: `cannot read free space at ${store.root}` }
      : { name: 'disk', status: free < 5 * 2 ** 30 ? 'warn' : 'ok', detail: `${(free / 2 ** 30).toFixed(1)} GiB free at ${store.root}`, fix: free < 5 * 2 ** 30 ? 'quantizing needs several times the model size: free disk or set BAKE_STORE' : undefined },
  );
  if (input.opts.daemonless) {
    checks.push({ name: 'docker engine', status: 'ok', detail: 'not checked (--daemonless: builds write OCI layouts, docker archives or push; no engine needed)' });
  } else {
    try {
      const { pingEngine, engineAddress } = await import('../image/docker/engine.js');
      const info = await pingEngine();
      checks.push({ name: 'docker engine', status: 'ok', detail: `${engineAddress()}: Docker ${info.version} (API ${info.apiVersion})` });
    } catch (err) {
      checks.push({ name: 'docker engine', status: 'fail', detail: (err as Error).message, fix: 'start dockerd (`sudo systemctl start docker`) or point DOCKER_HOST at a running engine; only `bake build` without --output needs one: `bake doctor --daemonless` leaves it out' });
    }
  }
  const registry = input.opts.registry as string | undefined;
  if (registry) {
    try {
      const res = await fetch(`http://${registry}/v2/`, { signal: AbortSignal.timeout(5000) });
      const ok = res.status === 200 || res.status === 401;
      checks.push({ name: 'registry', status: ok ? 'ok' : 'fail', detail: `${registry} answered ${res.status} to GET /v2/`, fix: ok ? undefined : 'a registry answers 200 or 401 there: check the address (host:port) names the registry, and its log' });
    } catch (err) {
      checks.push({ name: 'registry', status: 'fail', detail: `${registry}: ${(err as Error).message}`, fix: 'start the registry or check the address' });
    }
  }
  const failed = checks.filter((c) => c.status === 'fail').map((c) => c.name);
  const lines = checks.map((c) => `${c.status.padEnd(4)} ${c.name}: ${c.detail}${c.fix ? `\n     fix: ${c.fix}` : ''}`);
  if (failed.length) lines.push(`${failed.length} check(s) failed: ${failed.join(', ')}`);
  // The checks that can fail are the engine's and the registry's: exit 6 (README, "Exit codes").
  return { value: { checks }, text: lines.join('\n'), exit: failed.length ? 'engine' : 'ok' };
}
