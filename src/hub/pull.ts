// `bake pull` for one model: every file of its lock entry into the Hugging Face cache, verified.
import { realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import PQueue from 'p-queue';
import { sha256File } from '../util/digest.js';
import { InputError, IntegrityError, NetworkError } from '../util/errors.js';
import type { LockEntry, LockedFile } from '../lock/types.js';
import type { ArtifactFile, Store } from '../store/store.js';
import { openInside } from '../util/fs.js';
import type { HubConfig } from './config.js';
import {
  blobPath,
  checkRepoId,
  dropBlob,
  hasVerifiedStamp,
  isCommitSha,
  linkSnapshot,
  repoFolder,
  snapshotEntryFile,
  snapshotPath,
  writeRef,
  writeVerifiedStamp,
} from './cache.js';
import { withBlobLock } from './blob-lock.js';
import { downloadVerified } from './download.js';
import { resolveUrl } from './files.js';
import { checkModelPath } from '../lock/paths.js';

export { snapshotPath } from './cache.js';

export type PullEvent = {
  type: 'start' | 'progress' | 'done' | 'retry' | 'cached';
  path: string;
  bytes?: number;
  total?: number;
  attempt?: number;
  reason?: string;
};

export interface PullOptions {
  onEvent?: (e: PullEvent) => void;
  signal?: AbortSignal;
}

/**
 * Brings every file of `entry` into `snapshots/<commit>/` of the cache. Files whose verified blob is
 * already there are not downloaded again; a snapshot link is made only once its blob is verified;
 * `refs/<revision>` is written when the revision is a branch or tag.
 */
export async function pullModel(entry: LockEntry, cfg: HubConfig, opts: PullOptions = {}): Promise<{ snapshotDir: string; downloadedBytes: number }> {
  checkEntry(entry);
  const snapshotDir = snapshotPath(cfg, entry.repo, entry.commit);
  const emit = opts.onEvent ?? (() => {});
  // One failure stops the others: no point filling the disk for a pull that already failed.
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const queue = new PQueue({ concurrency: cfg.concurrency });
  let downloadedBytes = 0;
  let firstError: unknown;

  // Two paths with the same content share one blob: fetch it once, link it twice.
  const byBlob = new Map<string, LockedFile[]>();
  for (const file of entry.files) {
    const key = `${file.lfs ? 'lfs' : 'git'}:${file.sha256}`;
    byBlob.set(key, [...(byBlob.get(key) ?? []), file]);
  }

  for (const files of byBlob.values()) {
    void queue.add(async () => {
      if (signal.aborted) return;
      try {
        const bytes = await pullBlob(entry, files, cfg, emit, signal);
        downloadedBytes += bytes; // not `+= await`: that would read the total before other downloads add to it
      } catch (err) {
        if (firstError === undefined) firstError = err;
        stop.abort(err);
      }
    });
  }
  await queue.onIdle();
  if (firstError !== undefined) throw opts.signal?.aborted ? (opts.signal.reason ?? firstError) : firstError;
  await writeRef(cfg, entry.repo, entry.revision, entry.commit);
  return { snapshotDir, downloadedBytes };
}

/**
 * `pullModel`, then `read(snapshotDir)` (which hashes the files, e.g. into an artifact store). A cached
 * blob is trusted by its stamp (size, mtime, inode) without re-hashing it, so damage that leaves those
 * alone shows only when `read` hashes it: a file `read` finds corrupt (an IntegrityError on it) is
 * deleted from the cache and downloaded again, and `read` runs once more. Offline that cannot be done:
 * the error then says so. A fresh download that still does not match fails in downloadVerified,
 * saying the upstream file differs from the lock.
 */
export async function pullAndRead<T>(entry: LockEntry, cfg: HubConfig, opts: PullOptions, read: (snapshotDir: string) => Promise<T>): Promise<T> {
  const { snapshotDir } = await pullModel(entry, cfg, opts);
  try {
    return await read(snapshotDir);
  } catch (err) {
    const bad = err instanceof IntegrityError ? entry.files.find((f) => resolve(snapshotDir, f.path) === resolve(err.path)) : undefined;
    if (!bad) throw err;
    const cached = await snapshotEntryFile(cfg, entry.repo, entry.commit, bad.path);
    if (cached) await dropBlob(cfg, entry.repo, cached);
    const found = (err as IntegrityError).actualDigest;
    if (cfg.offline) {
      throw new IntegrityError(bad.path, bad.sha256, found, {
        file: join(snapshotDir, bad.path),
        hint: 'the copy in the Hugging Face cache was corrupt and has been removed; HF_HUB_OFFLINE=1 stops bake from downloading it again: unset HF_HUB_OFFLINE and run `bake pull` again',
        cause: err,
      });
    }
    opts.onEvent?.({ type: 'retry', path: bad.path, reason: `the cached copy does not match the lock (sha256 ${found.replace(/^sha256:/, '').slice(0, 12)}, lock ${bad.sha256.slice(0, 12)}); downloading it again` });
    const again = await pullModel(entry, cfg, opts);
    return read(again.snapshotDir);
  }
}

/**
 * Blobs this process downloaded and verified, with their identity then: the store takes such a blob
 * without reading it again (a download hashed every byte as it arrived). Any other cached blob is hashed
 * when the store takes it, which is what catches damage the stamp cannot see (see pullAndRead).
 */
const freshlyVerified = new Map<string, { sha256: string; dev: number; ino: number; size: number; mtimeMs: number }>();

async function rememberVerified(file: string, sha256: string): Promise<void> {
  const st = await stat(file);
  freshlyVerified.set(await realpath(file), { sha256, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });
}

/**
 * The files of a pulled snapshot into the store (the `read` of pullAndRead), without a second copy: the
 * store links to the cache's blob (or clones it, or refers to it; see Store.adoptFile). Each is opened
 * through its snapshot entry, whose link must stay inside the repo's cache folder (the cache is shared
 * with other tools), and must have the locked size and sha256: hashed as the store takes it, unless this
 * process downloaded and verified that very blob. An IntegrityError (exit 3) names the snapshot file, so
 * pullAndRead can replace a corrupt blob.
 */
export async function storeSnapshot(store: Store, entry: LockEntry, cfg: HubConfig): Promise<ArtifactFile[]> {
  checkEntry(entry);
  const folder = repoFolder(cfg, entry.repo);
  const snapshotDir = snapshotPath(cfg, entry.repo, entry.commit);
  const out: ArtifactFile[] = [];
  for (const f of entry.files) {
    const fh = await openInside(folder, `snapshots/${entry.commit}/${f.path}`);
    try {
      const st = await fh.stat();
      // The blob's own path, if it is still the file opened (the store links or refers to it by path).
      const real = await snapshotEntryFile(cfg, entry.repo, entry.commit, f.path);
      const now = real ? await stat(real).catch(() => undefined) : undefined;
      const path = now && now.dev === st.dev && now.ino === st.ino ? real : undefined;
      const fresh = path ? freshlyVerified.get(path) : undefined;
      const trusted = fresh !== undefined && fresh.sha256 === f.sha256 && fresh.dev === st.dev && fresh.ino === st.ino && fresh.size === st.size && fresh.mtimeMs === st.mtimeMs;
      const expect = {
        sha256: f.sha256,
        size: f.size,
        name: join(snapshotDir, f.path),
        hint: `the Hugging Face cache holds something else than ${entry.repo}/${f.path} as locked; run the command again to download it afresh`,
        trusted,
      };
      const { sha256, size } = path ? await store.adoptFile(fh, path, expect) : await store.putFile(fh, expect);
      out.push({ path: f.path, sha256, size });
    } finally {
      await fh.close();
    }
  }
  return out;
}

/** Pulls one content blob and links every path that has it. Returns the bytes downloaded. */
async function pullBlob(entry: LockEntry, files: LockedFile[], cfg: HubConfig, emit: (e: PullEvent) => void, signal: AbortSignal): Promise<number> {
  const first = files[0]!;
  // Locked so that another pull of the same content (this process or another) waits, then finds it cached.
  return withBlobLock(blobPath(cfg, entry.repo, first.sha256), () => pullBlobLocked(entry, files, cfg, emit, signal), signal);
}

async function pullBlobLocked(entry: LockEntry, files: LockedFile[], cfg: HubConfig, emit: (e: PullEvent) => void, signal: AbortSignal): Promise<number> {
  const first = files[0]!;
  const cached = await findVerifiedCopy(entry, first, cfg);
  if (cached) {
    for (const f of files) {
      await linkSnapshot(cfg, entry.repo, entry.commit, f.path, cached);
      emit({ type: 'cached', path: f.path, bytes: f.size, total: f.size });
    }
    return 0;
  }
  if (cfg.offline) {
    throw new NetworkError(
      `offline mode (HF_HUB_OFFLINE=1): ${first.path} of ${entry.repo}@${entry.commit.slice(0, 12)} (sha256 ${first.sha256}) is not in the cache at ${repoFolder(cfg, entry.repo)}`,
      { field: 'HF_HUB_OFFLINE', hint: 'run `bake pull` once with network access (unset HF_HUB_OFFLINE), or copy the Hugging Face cache from a machine that has it' },
    );
  }
  emit({ type: 'start', path: first.path, bytes: 0, total: first.size });
  // LFS blobs are named by sha256 from the start; others by git sha1, which is known after the download.
  const incomplete = `${blobPath(cfg, entry.repo, first.sha256)}.incomplete`;
  const staging = first.lfs ? blobPath(cfg, entry.repo, first.sha256) : `${incomplete}.verified`;
  const result = await downloadVerified(
    cfg,
    resolveUrl(cfg, entry.repo, entry.commit, first.path),
    incomplete,
    staging,
    { size: first.size, sha256: first.sha256 },
    { repo: entry.repo, revision: entry.commit, path: first.path },
    {
      signal,
      wantGitSha1: !first.lfs,
      onProgress: (p) => emit({ path: first.path, ...p }),
    },
  );
  let blobName = first.sha256;
  if (!first.lfs) {
    blobName = result.gitSha1!;
    await rename(staging, blobPath(cfg, entry.repo, blobName));
  }
  await writeVerifiedStamp(cfg, entry.repo, blobPath(cfg, entry.repo, blobName), first.sha256);
  await rememberVerified(blobPath(cfg, entry.repo, blobName), first.sha256);
  for (const f of files) await linkSnapshot(cfg, entry.repo, entry.commit, f.path, blobName);
  emit({ type: 'done', path: first.path, bytes: first.size, total: first.size });
  for (const f of files.slice(1)) emit({ type: 'cached', path: f.path, bytes: f.size, total: f.size });
  return result.downloadedBytes;
}

/**
 * A blob already in the cache with the locked size and sha256: re-hashed (the cache is shared with
 * other tools and may hold anything) unless bake's stamp says it was verified and is unchanged since.
 * Returns its blob name, or undefined.
 */
async function findVerifiedCopy(entry: LockEntry, file: LockedFile, cfg: HubConfig): Promise<string | undefined> {
  const candidates: string[] = [];
  if (file.lfs) candidates.push(blobPath(cfg, entry.repo, file.sha256));
  const linked = await snapshotEntryFile(cfg, entry.repo, entry.commit, file.path);
  if (linked) candidates.push(linked);
  for (const candidate of candidates) {
    // A snapshot entry that is a plain file (a copy, not a link to a blob) cannot be linked to.
    const name = basename(candidate);
    if (basename(dirname(candidate)) !== 'blobs' || !/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(name)) continue;
    const st = await stat(candidate).catch(() => undefined);
    if (!st?.isFile() || st.size !== file.size) continue;
    if (await hasVerifiedStamp(cfg, entry.repo, candidate, file.sha256)) return name;
    const { sha256 } = await sha256File(candidate);
    if (sha256 !== file.sha256) {
      // A corrupt blob under the name of its expected content would poison every later pull.
      if (file.lfs && candidate === blobPath(cfg, entry.repo, file.sha256)) await rm(candidate, { force: true });
      continue;
    }
    await writeVerifiedStamp(cfg, entry.repo, candidate, file.sha256);
    return name;
  }
  return undefined;
}

function checkEntry(entry: LockEntry): void {
  if (entry.source !== 'hub') {
    throw new InputError(`pullModel takes hub entries, got source ${JSON.stringify(entry.source)} for ${entry.repo}`, { field: 'source' });
  }
  checkRepoId(entry.repo);
  if (!isCommitSha(entry.commit)) {
    throw new InputError(`lock entry for ${entry.repo} has commit ${JSON.stringify(entry.commit)}`, {
      field: 'commit',
      expected: '40 lowercase hex digits',
      hint: 'run `bake lock --update` to pin the model again',
    });
  }
  for (const f of entry.files) {
    const problem = checkModelPath(f.path);
    if (problem) throw new InputError(`lock entry for ${entry.repo} names an unsafe file ${JSON.stringify(f.path)}: ${problem}`, { field: 'files' });
    if (!/^[0-9a-f]{64}$/.test(f.sha256) || !Number.isSafeInteger(f.size) || f.size < 0) {
      throw new InputError(`lock entry for ${entry.repo} file ${f.path} needs a sha256 (64 hex digits) and a size`, { field: 'files', hint: 'run `bake lock --update`' });
    }
  }
}
