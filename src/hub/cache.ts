// The Hugging Face cache layout, shared with Python's huggingface_hub:
//   <cacheDir>/models--org--name/blobs/<etag>                 content; LFS files by sha256, others by git sha1
//   <cacheDir>/models--org--name/snapshots/<commit>/<path>    relative symlink to ../../blobs/<etag>
//   <cacheDir>/models--org--name/refs/<revision>               the commit a branch or tag pointed to
// Blobs are renamed into place only after verification, and snapshot links are made only to such
// blobs, so whatever a reader finds under snapshots/ is complete and checked.
import { lstat, mkdir, readFile, readlink, realpath, rename, rm, stat, symlink } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { InputError } from '../util/errors.js';
import { safeJoin, tempPathFor, writeFileAtomic } from '../util/fs.js';
import type { HubConfig } from './config.js';

/** `org/name`: letters, digits, `-`, `_`, `.`; no `--` or `..` (the Hub refuses those too). */
const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function checkRepoId(repo: string, field = 'repo'): void {
  if (!REPO_ID.test(repo) || repo.includes('--') || repo.includes('..') || repo.length > 200) {
    throw new InputError(`not a Hugging Face model repo id: ${JSON.stringify(repo)}`, {
      field,
      expected: '`org/name` made of letters, digits, `-`, `_` and `.` (no `--` or `..`)',
      hint: 'copy the id from the model page URL, e.g. `TinyLlama/TinyLlama-1.1B-Chat-v1.0`',
    });
  }
}

export function isCommitSha(s: string): boolean {
  return /^[0-9a-f]{40}$/.test(s);
}

export function repoFolder(cfg: HubConfig, repo: string): string {
  checkRepoId(repo);
  return join(cfg.cacheDir, `models--${repo.replace('/', '--')}`);
}

export function blobPath(cfg: HubConfig, repo: string, blobName: string): string {
  if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(blobName)) throw new Error(`bad blob name ${blobName}`);
  return join(repoFolder(cfg, repo), 'blobs', blobName);
}

export function snapshotPath(cfg: HubConfig, repo: string, commit: string): string {
  if (!isCommitSha(commit)) {
    throw new InputError(`not a commit sha: ${JSON.stringify(commit)}`, { field: 'commit', expected: '40 lowercase hex digits' });
  }
  return join(repoFolder(cfg, repo), 'snapshots', commit);
}

/** The file a snapshot entry lives at; undefined when `path` would leave the snapshot folder. */
export function snapshotFile(cfg: HubConfig, repo: string, commit: string, path: string): string | undefined {
  return safeJoin(snapshotPath(cfg, repo, commit), path);
}

function refFile(cfg: HubConfig, repo: string, revision: string): string | undefined {
  return safeJoin(join(repoFolder(cfg, repo), 'refs'), revision);
}

/** The commit a branch or tag pointed to when it was last resolved online, if recorded. */
export async function readRef(cfg: HubConfig, repo: string, revision: string): Promise<string | undefined> {
  const file = refFile(cfg, repo, revision);
  if (!file) return undefined;
  try {
    const text = (await readFile(file, 'utf8')).trim();
    return isCommitSha(text) ? text : undefined;
  } catch {
    return undefined;
  }
}

/** Records `revision -> commit` (Python writes the sha without a newline; so do we). */
export async function writeRef(cfg: HubConfig, repo: string, revision: string, commit: string): Promise<void> {
  if (isCommitSha(revision)) return;
  const file = refFile(cfg, repo, revision);
  if (!file) throw new InputError(`revision ${JSON.stringify(revision)} is not a usable ref name`, { field: 'revision' });
  if ((await readRef(cfg, repo, revision)) === commit) return;
  await writeFileAtomic(file, commit);
}

/**
 * Points snapshots/<commit>/<path> at a verified blob with a relative symlink (as Python does), replacing
 * whatever was there through a rename so readers never see a missing or dangling entry.
 */
export async function linkSnapshot(cfg: HubConfig, repo: string, commit: string, path: string, blobName: string): Promise<void> {
  const target = snapshotFile(cfg, repo, commit, path);
  if (!target) throw new InputError(`file name escapes the repo folder: ${JSON.stringify(path)}`, { field: 'files' });
  const blob = blobPath(cfg, repo, blobName);
  const linkText = relative(dirname(target), blob);
  try {
    if ((await readlink(target)) === linkText) return;
  } catch {
    // missing or not a link: (re)create below
  }
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  try {
    await symlink(linkText, tmp);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * The real file behind a snapshot entry, if it exists and stays inside the repo folder (a cache is
 * shared with other tools: a link pointing elsewhere is not trusted).
 */
export async function snapshotEntryFile(cfg: HubConfig, repo: string, commit: string, path: string): Promise<string | undefined> {
  const entry = snapshotFile(cfg, repo, commit, path);
  if (!entry) return undefined;
  try {
    await lstat(entry);
    const real = await realpath(entry);
    const root = await realpath(repoFolder(cfg, repo));
    const rel = relative(root, real);
    if (rel.startsWith('..') || rel === '' || rel.startsWith('/')) return undefined;
    return real;
  } catch {
    return undefined;
  }
}

/**
 * Re-hashing a multi-GB blob on every pull (or container start) is slow, so a blob bake verified gets a
 * stamp of its sha256 plus the file's identity (device, inode, size, mtime), like git's index: a blob
 * whose identity still matches is trusted without reading it. Stamps live under `.locks/` (which
 * huggingface_hub uses for its own lock files and skips when scanning the cache).
 */
interface VerifiedStamp {
  sha256: string;
  size: number;
  dev: number;
  ino: number;
  mtimeMs: number;
}

function stampFile(cfg: HubConfig, repo: string, blobName: string): string {
  return join(cfg.cacheDir, '.locks', `models--${repo.replace('/', '--')}`, `${blobName}.bake-verified`);
}

/** True when `file` (a blob) was verified to have `sha256` and has not changed since. */
export async function hasVerifiedStamp(cfg: HubConfig, repo: string, file: string, sha256: string): Promise<boolean> {
  try {
    const [text, st] = await Promise.all([readFile(stampFile(cfg, repo, basename(file)), 'utf8'), stat(file)]);
    const s = JSON.parse(text) as Partial<VerifiedStamp>;
    return s.sha256 === sha256 && s.size === st.size && s.dev === st.dev && s.ino === st.ino && s.mtimeMs === st.mtimeMs;
  } catch {
    return false;
  }
}

export async function writeVerifiedStamp(cfg: HubConfig, repo: string, file: string, sha256: string): Promise<void> {
  const st = await stat(file);
  const stamp: VerifiedStamp = { sha256, size: st.size, dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs };
  await writeFileAtomic(stampFile(cfg, repo, basename(file)), JSON.stringify(stamp));
}

/** Removes a blob found corrupt, and its stamp, so that nothing trusts it again. */
export async function dropBlob(cfg: HubConfig, repo: string, file: string): Promise<void> {
  await rm(stampFile(cfg, repo, basename(file)), { force: true });
  await rm(file, { force: true });
}
