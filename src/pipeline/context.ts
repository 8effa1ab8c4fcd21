// Everything a pipeline run needs, passed in explicitly (no globals): store, Hub settings, lock, events,
// the toolchain whose versions enter step keys.
import { resolve } from 'node:path';
import { hubConfigFromEnv, type HubConfig } from '../hub/config.js';
import { lockfilePath, readLockfile } from '../lock/lockfile.js';
import type { Lockfile } from '../lock/types.js';
import { defaultStoreRoot, Store } from '../store/store.js';
import { InputError } from '../util/errors.js';
import type { EventSink } from './events.js';
import { detectToolchain, type Toolchain } from './toolchain.js';

export interface PipelineContext {
  store: Store;
  hub: HubConfig;
  lock: Lockfile;
  /** Project root: where recipes/, models.lock and node_modules live. */
  root: string;
  onEvent: EventSink;
  /** Re-run steps even when cached. */
  force?: boolean;
  /** Seconds since epoch for file times and image timestamps (SOURCE_DATE_EPOCH, else 0). */
  epoch: number;
  /** Versions of the tools that shape step outputs (detected; tests may pin them). */
  toolchain: Toolchain;
  env: NodeJS.ProcessEnv;
}

export interface ContextOptions {
  /** Project root (default: the current folder). */
  project?: string;
  /** Artifact store (default BAKE_STORE, else ~/.cache/bake). */
  store?: string;
  onEvent?: EventSink;
  force?: boolean;
  env?: NodeJS.ProcessEnv;
  toolchain?: Partial<Toolchain>;
}

export async function createContext(opts: ContextOptions = {}): Promise<PipelineContext> {
  const env = opts.env ?? process.env;
  const root = resolve(opts.project ?? process.cwd());
  return {
    store: new Store(opts.store ?? defaultStoreRoot(env)),
    hub: hubConfigFromEnv(env),
    lock: await readLockfile(lockfilePath(root)),
    root,
    onEvent: opts.onEvent ?? (() => {}),
    epoch: sourceDateEpoch(env),
    force: opts.force,
    toolchain: { ...detectToolchain(), ...opts.toolchain },
    env,
  };
}

export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return 0;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new InputError(`SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, got ${JSON.stringify(v)}`, {
      field: 'SOURCE_DATE_EPOCH',
      expected: 'digits only, e.g. 1700000000 (`git log -1 --format=%ct` gives the last commit\'s)',
      hint: 'unset it for the default 0, or set it to a whole number of seconds',
    });
  }
  return Number(v);
}
