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

/** Latest time an RFC 3339 timestamp (image `created`) can hold: 9999-12-31T23:59:59Z. */
const MAX_EPOCH = 253_402_300_799;

export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return 0;
  if (!/^\d+$/.test(v) || Number(v) > MAX_EPOCH) {
    throw new InputError(`SOURCE_DATE_EPOCH must be a whole number of seconds since 1970-01-01 UTC, got ${JSON.stringify(v)}`, {
      field: 'SOURCE_DATE_EPOCH',
      expected: `digits only, at most ${MAX_EPOCH} (year 9999), e.g. 1700000000`,
      hint: 'unset it, or set it from the last commit: SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)',
    });
  }
  return Number(v);
}
