// The Hugging Face cache is shared with other tools and users: blobs get deleted or damaged behind
// bake's back. `bake pull` promises a complete cache, so even when its result comes from bake's own
// store it checks the snapshot (a stat per file, no hashing) and downloads again what is gone.
import { stat } from 'node:fs/promises';
import type { LockEntry } from '../lock/types.js';
import { IntegrityError, NetworkError } from '../util/errors.js';
import { snapshotEntryFile, snapshotFile, snapshotPath } from './cache.js';
import type { HubConfig } from './config.js';
import { pullModel, type PullOptions } from './pull.js';

export interface SnapshotProblem {
  path: string;
  /** missing: no entry, a dangling link (its blob was deleted) or a link leaving the repo folder. */
  problem: 'missing' | 'size';
  /** Size found, for `size`. */
  size?: number;
  expected: number;
}

/** Which locked files of `entry` are not in snapshots/<commit>/ with their locked size. */
export async function checkSnapshot(entry: LockEntry, cfg: HubConfig): Promise<SnapshotProblem[]> {
  const problems: SnapshotProblem[] = [];
  for (const f of entry.files) {
    const real = await snapshotEntryFile(cfg, entry.repo, entry.commit, f.path);
    const st = real ? await stat(real).catch(() => undefined) : undefined;
    if (!st?.isFile()) problems.push({ path: f.path, problem: 'missing', expected: f.size });
    else if (st.size !== f.size) problems.push({ path: f.path, problem: 'size', size: st.size, expected: f.size });
  }
  return problems.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Brings back the files `checkSnapshot` finds missing or of the wrong size (downloaded and verified
 * as `pullModel` does; intact files are not touched). Offline (HF_HUB_OFFLINE=1) that cannot be done:
 * a missing file is a NetworkError (exit 4), a wrong-sized one an IntegrityError (exit 3), each
 * naming the file and the fix.
 */
export async function repairSnapshot(entry: LockEntry, cfg: HubConfig, opts: PullOptions = {}): Promise<{ repaired: string[]; downloadedBytes: number }> {
  const problems = await checkSnapshot(entry, cfg);
  if (problems.length === 0) return { repaired: [], downloadedBytes: 0 };
  if (cfg.offline) throw offlineError(entry, cfg, problems);
  const broken = new Set(problems.map((p) => p.path));
  const files = entry.files.filter((f) => broken.has(f.path));
  for (const p of problems) opts.onEvent?.({ type: 'retry', path: p.path, reason: p.problem === 'missing' ? 'missing from the Hugging Face cache; downloading it again' : `${p.size} bytes in the Hugging Face cache instead of ${p.expected}; downloading it again` });
  const { downloadedBytes } = await pullModel({ ...entry, files }, cfg, opts);
  return { repaired: files.map((f) => f.path).sort(), downloadedBytes };
}

function offlineError(entry: LockEntry, cfg: HubConfig, problems: SnapshotProblem[]): NetworkError | IntegrityError {
  const first = problems[0]!;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more: ${problems.slice(1, 6).map((p) => p.path).join(', ')}${problems.length > 6 ? ', ...' : ''})` : '';
  const hint = 'run `bake pull` with network access (unset HF_HUB_OFFLINE) to download it again, or copy the Hugging Face cache from a machine that has it';
  if (first.problem === 'size') {
    return new IntegrityError(first.path, `${first.expected} bytes`, `${first.size} bytes`, {
      file: snapshotFile(cfg, entry.repo, entry.commit, first.path),
      hint: `the copy in the Hugging Face cache is damaged${more}; ${hint}`,
    });
  }
  return new NetworkError(
    `offline mode (HF_HUB_OFFLINE=1): ${first.path} of ${entry.repo}@${entry.commit.slice(0, 12)} is missing from the Hugging Face cache at ${snapshotPath(cfg, entry.repo, entry.commit)} (its blob was deleted, or it was never downloaded)${more}`,
    { field: 'HF_HUB_OFFLINE', hint },
  );
}
