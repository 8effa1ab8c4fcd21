// Pins a Hub model: revision -> commit sha, and every selected file -> path, size, sha256.
// Online it asks the Hub (through @huggingface/hub); offline (HF_HUB_OFFLINE=1) it reads the cache.
// The result depends only on the repo's content at that commit, so locking twice gives equal bytes.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, rename, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { listFiles, modelInfo } from '@huggingface/hub';
import PQueue from 'p-queue';
import type { ModelSpec } from '../recipe/types.js';
import type { LockEntry, LockedFile } from './types.js';
import type { HubConfig } from '../hub/config.js';
import { blobPath, checkRepoId, isCommitSha, linkSnapshot, readRef, repoFolder, snapshotEntryFile, snapshotPath } from '../hub/cache.js';
import { withBlobLock } from '../hub/blob-lock.js';
import { downloadVerified } from '../hub/download.js';
import { resolveUrl } from '../hub/files.js';
import { hubFileReader } from '../hub/peek.js';
import { checkModelPath } from './paths.js';
import { refuseUnsafeFiles } from './pickle.js';
import { apiFetch, describeCause } from '../hub/http.js';
import { BakeError, InputError, IntegrityError, NetworkError } from '../util/errors.js';
import { fileMatcher } from '../util/glob.js';

/** Bound on a listing (files and folders): a server paging forever must not keep us listing forever. */
const MAX_LISTED_ENTRIES = 200_000;

/** A file of the repo at the resolved commit, as the Hub's tree lists it. */
interface RepoFile {
  path: string;
  size: number;
  /** git blob sha1 (for LFS files, of the pointer). */
  gitOid?: string;
  /** sha256 of the content, for LFS files. */
  lfsOid?: string;
}

export async function resolveHubModel(model: ModelSpec, cfg: HubConfig): Promise<Omit<LockEntry, 'fragment'>> {
  const repo = model.repo;
  const field = `models.${model.id}`;
  if (!repo) throw new InputError(`model ${model.id} has no \`repo\`: resolveHubModel pins Hub models only`, { field: `${field}.repo` });
  checkRepoId(repo, `${field}.repo`);
  const revision = model.revision || 'main';

  const { commit, files: listed } = cfg.offline ? await listFromCache(cfg, repo, revision) : await listFromHub(cfg, repo, revision).catch(unreadable(cfg, repo));
  const selected = selectFiles(model, listed, cfg.offline ? `the cache (${repoFolder(cfg, repo)})` : `${repo}@${revision}`);

  const queue = new PQueue({ concurrency: cfg.concurrency });
  const locked = await Promise.all(
    selected.map((f) => queue.add(() => lockFile(cfg, repo, commit, f))),
  );
  locked.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  // What each file is, from its bytes (ranged reads; small files are in the cache by now): pickles refused.
  await refuseUnsafeFiles(model, locked, hubFileReader(cfg, repo, commit, locked), repo);
  return { source: 'hub', repo, revision, commit, files: locked };
}

/** The library throws plain TypeErrors/SyntaxErrors on answers it cannot parse: say it was the server. */
function unreadable(cfg: HubConfig, repo: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof BakeError) throw err;
    throw new NetworkError(`the Hub at ${cfg.endpoint} sent an answer about ${repo} that could not be read: ${describeCause(err)}`, {
      field: 'repo',
      hint: 'check that HF_ENDPOINT points at a Hugging Face Hub (or a mirror speaking its API)',
      cause: err,
    });
  };
}

async function listFromHub(cfg: HubConfig, repo: string, revision: string): Promise<{ commit: string; files: RepoFile[] }> {
  const common = { hubUrl: cfg.endpoint, ...(cfg.token ? { accessToken: cfg.token } : {}) };
  const info = await modelInfo({ ...common, name: repo, revision, additionalFields: ['sha'], fetch: apiFetch(cfg, { repo, revision }) });
  const commit = info.sha;
  if (typeof commit !== 'string' || !isCommitSha(commit)) {
    throw new NetworkError(`the Hub at ${cfg.endpoint} answered model info for ${repo}@${revision} without a commit sha`, {
      hint: 'check HF_ENDPOINT points at a Hugging Face Hub',
    });
  }
  // List at the commit, not the branch, so a push between the two calls cannot mix two versions.
  const files: RepoFile[] = [];
  let seen = 0;
  for await (const entry of listFiles({ ...common, repo, revision: commit, recursive: true, fetch: apiFetch(cfg, { repo, revision: commit }) })) {
    if (++seen > MAX_LISTED_ENTRIES) {
      throw new NetworkError(`${repo}@${commit} lists more than ${MAX_LISTED_ENTRIES} entries; refusing to go on`, {
        field: 'repo',
        hint: 'this does not look like a model repo; check the repo id and HF_ENDPOINT',
      });
    }
    if (entry.type !== 'file') continue;
    const problem = checkModelPath(entry.path);
    if (problem) {
      throw new InputError(`${repo}@${commit} lists a file name that is unsafe to write: ${JSON.stringify(entry.path)} (${problem})`, {
        field: 'repo',
        hint: 'this repo (or the server at HF_ENDPOINT) cannot be used as is; report it to its owner',
      });
    }
    if (!Number.isSafeInteger(entry.size) || entry.size < 0) {
      throw new NetworkError(`${repo}@${commit} lists ${entry.path} with an invalid size ${String(entry.size)}`, {});
    }
    const lfsOid = entry.lfs?.oid;
    if (lfsOid !== undefined && !/^[0-9a-f]{64}$/.test(lfsOid)) {
      throw new NetworkError(`${repo}@${commit} lists ${entry.path} with an LFS oid that is not a sha256: ${JSON.stringify(lfsOid)}`, {});
    }
    files.push({ path: entry.path, size: entry.size, gitOid: entry.oid, lfsOid });
  }
  return { commit, files };
}

/** Offline: the commit from refs/<revision> (or the revision itself when it is a sha), files from its snapshot. */
async function listFromCache(cfg: HubConfig, repo: string, revision: string): Promise<{ commit: string; files: RepoFile[] }> {
  const folder = repoFolder(cfg, repo);
  let commit: string | undefined = isCommitSha(revision) ? revision : await readRef(cfg, repo, revision);
  const snapDir = commit ? snapshotPath(cfg, repo, commit) : undefined;
  if (!commit || !snapDir || !(await stat(snapDir).catch(() => undefined))?.isDirectory()) {
    throw new NetworkError(`offline mode (HF_HUB_OFFLINE=1): ${repo}@${revision} is not in the Hugging Face cache at ${folder}`, {
      field: 'HF_HUB_OFFLINE',
      hint: 'run `bake lock` once with network access (unset HF_HUB_OFFLINE), or download the model with huggingface-cli into this cache',
    });
  }
  const files: RepoFile[] = [];
  for (const path of await walk(snapDir, '')) {
    const real = await snapshotEntryFile(cfg, repo, commit, path);
    if (!real) continue; // dangling, or pointing outside the repo folder: not usable content
    const st = await stat(real);
    const name = basename(real);
    // A blob named by a sha256 is an LFS file (Python names blobs by their etag: sha256 for LFS).
    files.push({ path, size: st.size, lfsOid: basename(dirname(real)) === 'blobs' && /^[0-9a-f]{64}$/.test(name) ? name : undefined });
  }
  return { commit, files };
}

async function walk(root: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(prefix ? join(root, prefix) : root, { withFileTypes: true });
  for (const e of entries) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walk(root, rel)));
    else if (!e.name.endsWith('.incomplete') && !checkModelPath(rel)) out.push(rel);
  }
  return out;
}

function selectFiles(model: ModelSpec, listed: RepoFile[], where: string): RepoFile[] {
  const field = `models.${model.id}`;
  const patterns = model.files.length > 0 ? model.files : ['**'];
  const matches = fileMatcher(patterns);
  const selected = listed.filter((f) => matches(f.path));
  if (selected.length === 0) {
    throw new InputError(`no file in ${where} matches ${JSON.stringify(patterns)} (it has ${listed.length} files: ${listed.slice(0, 8).map((f) => f.path).join(', ')}${listed.length > 8 ? ', ...' : ''})`, {
      field: `${field}.files`,
      hint: 'adjust the `files` globs to names the repo has',
    });
  }
  return selected;
}

/** path, size and sha256 of one file: the LFS oid, else computed from the content (fetched once and cached). */
async function lockFile(cfg: HubConfig, repo: string, commit: string, f: RepoFile): Promise<LockedFile> {
  if (f.lfsOid) return { path: f.path, size: f.size, sha256: f.lfsOid, lfs: true };
  if (cfg.offline) return lockSmallFile(cfg, repo, commit, f);
  const key = blobPath(cfg, repo, f.gitOid && /^[0-9a-f]{40}$/.test(f.gitOid) ? f.gitOid : createHash('sha1').update(f.path).digest('hex'));
  return withBlobLock(key, () => lockSmallFile(cfg, repo, commit, f));
}

async function lockSmallFile(cfg: HubConfig, repo: string, commit: string, f: RepoFile): Promise<LockedFile> {
  if (cfg.offline) {
    const real = await snapshotEntryFile(cfg, repo, commit, f.path);
    const h = await hashFile(real!, f.size);
    return { path: f.path, size: h.size, sha256: h.sha256, lfs: false };
  }
  // Small file: the tree gives only its git sha1. Reuse a cached copy whose git sha1 matches, else fetch it.
  if (f.gitOid && /^[0-9a-f]{40}$/.test(f.gitOid)) {
    const cached = blobPath(cfg, repo, f.gitOid);
    const st = await stat(cached).catch(() => undefined);
    if (st?.isFile() && st.size === f.size) {
      const h = await hashFile(cached, f.size);
      if (h.gitSha1 === f.gitOid) {
        await linkSnapshot(cfg, repo, commit, f.path, f.gitOid);
        return { path: f.path, size: f.size, sha256: h.sha256, lfs: false };
      }
    }
  }
  const staging = blobPath(cfg, repo, f.gitOid && /^[0-9a-f]{40}$/.test(f.gitOid) ? f.gitOid : createHash('sha1').update(f.path).digest('hex'));
  const result = await downloadVerified(
    cfg,
    resolveUrl(cfg, repo, commit, f.path),
    `${staging}.incomplete`,
    `${staging}.verified`,
    { size: f.size, ...(f.gitOid ? { gitSha1: f.gitOid } : {}) },
    { repo, revision: commit, path: f.path },
    { wantGitSha1: true },
  );
  const gitSha1 = result.gitSha1!;
  await rename(`${staging}.verified`, blobPath(cfg, repo, gitSha1));
  await linkSnapshot(cfg, repo, commit, f.path, gitSha1);
  return { path: f.path, size: f.size, sha256: result.sha256, lfs: false };
}

async function hashFile(path: string, expectedSize: number): Promise<{ sha256: string; gitSha1: string; size: number }> {
  const sha256 = createHash('sha256');
  const st = await stat(path);
  if (st.size !== expectedSize) throw new IntegrityError(path, `${expectedSize} bytes`, `${st.size} bytes`);
  const sha1 = createHash('sha1').update(`blob ${st.size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    sha256.update(chunk as Buffer);
    sha1.update(chunk as Buffer);
  }
  return { sha256: sha256.digest('hex'), gitSha1: sha1.digest('hex'), size: st.size };
}
