// Everything a pipeline run needs, passed in explicitly (no globals): store, Hub settings, lock, events.
import type { HubConfig } from '../hub/config.js';
import type { Lockfile } from '../lock/types.js';
import type { Store } from '../store/store.js';
import { InputError } from '../util/errors.js';
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
