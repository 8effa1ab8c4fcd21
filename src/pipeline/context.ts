// Everything a pipeline run needs, passed in explicitly (no globals): store, Hub settings, lock, events.
import type { HubConfig } from '../hub/config.js';
import type { Lockfile } from '../lock/types.js';
import type { Store } from '../store/store.js';
import type { EventSink } from './events.js';

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
}

export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return 0;
  if (!/^\d+$/.test(v)) throw new Error(`SOURCE_DATE_EPOCH must be a whole number of seconds, got ${JSON.stringify(v)}`);
  return Number(v);
}
