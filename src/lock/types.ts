// models.lock: one file at the project root pinning every model of every recipe to exact bytes.

export interface LockedFile {
  /** Path inside the repo (POSIX). */
  path: string;
  size: number;
  /** sha256 of the content: the LFS oid, or computed for small non-LFS files. */
  sha256: string;
  /** True when the Hub stores the file in LFS/Xet (its oid is the sha256 itself). */
  lfs: boolean;
}

export interface LockEntry {
  /** `hub` for Hugging Face repos, `path` for local folders. */
  source: 'hub' | 'path';
  /** Hub repo `org/name`, or the recipe's `path` value. */
  repo: string;
  /** Revision the recipe asked for (branch, tag or sha). */
  revision: string;
  /** Commit sha it resolved to; for `path` sources, the digest of the file list. */
  commit: string;
  /** Digest of the recipe fragment (repo, revision, files, allow_pickle) this entry was locked for. */
  fragment: string;
  files: LockedFile[];
}

export interface Lockfile {
  version: 1;
  /** Keyed by `<recipe>/<model id>`. */
  models: Record<string, LockEntry>;
}

export function lockKey(recipe: string, modelId: string): string {
  return `${recipe}/${modelId}`;
}
