// The content-addressed artifact store and the step cache.
//
// Layout under the store root (BAKE_STORE, else $XDG_CACHE_HOME/bake, else ~/.cache/bake):
//   blobs/sha256/<hex>        file contents, named by their sha256 (read-only)
//   refs/sha256/<hex>.json    a verified reference to a file kept by another cache (below)
//   artifacts/<hex>.json      an artifact: a tree of files (path -> blob) plus metadata; named by its digest
//   steps/<key>.json          a finished step: its key's inputs and the artifact it produced
// Every write is temp file + rename and every name is a digest of the content, so two processes that
// share a store can only ever race to write the same bytes: neither can corrupt the other.
//
// One copy of the bytes: a file the store takes from the Hugging Face cache (`adoptFile`) is a hard link
// to the cache's blob when the filesystem allows (the same inode under two names, both read-only: neither
// cache writes a blob in place, and deleting one name leaves the other), else a reflink (a copy-on-write
// clone sharing the blocks), else a verified reference: the blob's path and identity (device, inode,
// size, mtime), trusted while the identity holds, and missing (the step that stored it runs again) once
// it does not. A step's own outputs, written in the store's scratch folder, are linked in, not copied.
import { constants } from 'node:fs';
import { chmod, copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { createHash, type Hash } from 'node:crypto';
import { digestOf, isSha256Hex, sha256Bytes, type Sha256Hex } from '../util/digest.js';
import { BakeError, InputError, IntegrityError } from '../util/errors.js';
import { canonicalJson, prettyJson } from '../util/json.js';
import { asDiskFull, listFilesInside, safeJoin, tempPathFor, writeFileAtomic } from '../util/fs.js';

/** What a file put into the store must be, and how errors name it. */
export interface ExpectedFile {
  sha256?: Sha256Hex;
  /** adoptFile: this process verified the file and it is unchanged since (it is not hashed again). */
  trusted?: boolean;
  size?: number;
  /** The file as the user knows it (model id, lock entry, path); default its path. */
  name?: string;
  /** The user's file, for the error's `file` field. */
  file?: string;
  /** How to fix a mismatch. */
  hint?: string;
}

/** How a file's bytes came into the store. */
export type Placement = 'present' | 'linked' | 'cloned' | 'copied' | 'referenced';

/** A file kept by another cache that the store refers to instead of holding its bytes. */
interface BlobRef {
  v: 1;
  path: string;
  size: number;
  dev: number;
  ino: number;
  mtimeMs: number;
}

/** A blob an artifact names that the store no longer has (a referenced file deleted or changed). */
export interface MissingBlob {
  path: string;
  sha256: Sha256Hex;
  /** Why, in words: which referenced file is gone or changed. */
  reason: string;
}

export interface ArtifactFile {
  /** Relative POSIX path inside the artifact. */
  path: string;
  sha256: Sha256Hex;
  size: number;
}

/** A tree of files plus free-form metadata. Its digest is the sha256 of its canonical JSON. */
export interface Artifact {
  kind: string;
  files: ArtifactFile[];
  meta: Record<string, unknown>;
}

export interface StepRecord {
  key: Sha256Hex;
  step: string;
  version: number;
  inputs: Sha256Hex[];
  params: unknown;
  artifact: Sha256Hex;
}

export function defaultStoreRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BAKE_STORE) return env.BAKE_STORE;
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'bake');
}

/** key = digest of (step name, step version, input digests, parameters, versions of the tools it uses). */
export function stepKey(k: { step: string; version: number; inputs: Sha256Hex[]; params: unknown; tools?: Record<string, string> }): Sha256Hex {
  return digestOf({ step: k.step, version: k.version, inputs: k.inputs, params: k.params, tools: k.tools ?? {} });
}

export function artifactDigest(a: Artifact): Sha256Hex {
  const files = [...a.files].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  return sha256Bytes(canonicalJson({ ...a, files }));
}

export class Store {
  /**
   * For error messages only (in memory, never stored): where this process materialized artifacts, and
   * what the user calls the files of some of them (a local model folder or a Hub repo `org/name`), so a
   * reader failing on bake's scratch copy can be reported against the user's file.
   */
  private readonly placed = new Map<string, Sha256Hex>();
  /** digest -> model id -> the user's root; blob sha256 -> model id -> the user's file. */
  private readonly userRoots = new Map<Sha256Hex, Map<string, string>>();
  private readonly userBlobs = new Map<Sha256Hex, Map<string, string>>();

  constructor(readonly root: string = defaultStoreRoot()) {}

  /**
   * Records that `artifact`'s files are `model`'s files under `userRoot` (a folder or `org/name`). Two
   * models may fetch the same bytes (one artifact): each keeps its own name.
   */
  nameArtifact(digest: Sha256Hex, artifact: Artifact, userRoot: string, model = ''): void {
    const remember = (map: Map<Sha256Hex, Map<string, string>>, key: Sha256Hex, value: string) => {
      const names = map.get(key) ?? new Map<string, string>();
      names.set(model, value);
      map.set(key, names);
    };
    remember(this.userRoots, digest, userRoot);
    for (const f of artifact.files) remember(this.userBlobs, f.sha256, `${userRoot}/${f.path}`);
  }

  /** Forgets the materializations under `dir` (a scratch folder about to be removed). */
  forgetPlaced(dir: string): void {
    const under = resolve(dir);
    for (const placed of this.placed.keys()) if (placed === under || placed.startsWith(under + sep)) this.placed.delete(placed);
  }

  /**
   * `text` with every path into a materialized copy of a named artifact, or into the blob of one of its
   * files, replaced by the user's path for it (as `model` names it, when given). Other text is left as is.
   */
  userPaths(text: string, model?: string): string {
    const pick = (names: Map<string, string> | undefined) => (names ? ((model !== undefined ? names.get(model) : undefined) ?? names.values().next().value) : undefined);
    let out = text;
    for (const [dir, digest] of this.placed) {
      const userRoot = pick(this.userRoots.get(digest));
      if (userRoot && out.includes(dir)) out = out.replace(new RegExp(`${escapeRegExp(dir)}(?=$|[/\\s'"\`:;,)\\]])`, 'g'), () => userRoot);
    }
    const blobs = join(this.root, 'blobs', 'sha256') + sep;
    if (out.includes(blobs)) out = out.replace(new RegExp(`${escapeRegExp(blobs)}([0-9a-f]{64})`, 'g'), (m, hex: string) => pick(this.userBlobs.get(hex)) ?? m);
    return out;
  }

  blobPath(sha256: Sha256Hex): string {
    if (!isSha256Hex(sha256)) throw new BakeError(`not a sha256 digest: ${sha256}`);
    return join(this.root, 'blobs', 'sha256', sha256);
  }

  /** Whether the store has `sha256`'s bytes: its own blob, or a reference whose file is unchanged. */
  async hasBlob(sha256: Sha256Hex): Promise<boolean> {
    return (await this.blobFile(sha256).catch(() => undefined)) !== undefined;
  }

  /**
   * The file holding `sha256`'s bytes: the store's own blob, or the file a reference points at while its
   * identity is unchanged. Throws (exit 3) when neither is there.
   */
  async blobFile(sha256: Sha256Hex): Promise<string> {
    const own = this.blobPath(sha256);
    if ((await stat(own).catch(() => undefined))?.isFile()) return own;
    const problem = await this.refProblem(sha256);
    if (problem === undefined) return (await this.readRef(sha256))!.path;
    throw new IntegrityError(`blob ${sha256}`, `sha256:${sha256}`, problem, {
      file: own,
      hint: 'run the step that stored it again (`bake plan` shows which); the file it referred to in another cache is gone or changed',
    });
  }

  /** Blobs of `artifact` the store cannot give (own blob absent, reference broken), with the reason. */
  async missingBlobs(artifact: Artifact): Promise<MissingBlob[]> {
    const missing: MissingBlob[] = [];
    for (const f of artifact.files) {
      if ((await stat(this.blobPath(f.sha256)).catch(() => undefined))?.isFile()) continue;
      missing.push({ path: f.path, sha256: f.sha256, reason: (await this.refProblem(f.sha256)) ?? '' });
    }
    return missing.filter((m) => m.reason !== '');
  }

  private refFile(sha256: Sha256Hex): string {
    if (!isSha256Hex(sha256)) throw new BakeError(`not a sha256 digest: ${sha256}`);
    return join(this.root, 'refs', 'sha256', `${sha256}.json`);
  }

  private async readRef(sha256: Sha256Hex): Promise<BlobRef | undefined> {
    try {
      const ref = JSON.parse(await readFile(this.refFile(sha256), 'utf8')) as Partial<BlobRef>;
      if (ref.v !== 1 || typeof ref.path !== 'string' || ![ref.size, ref.dev, ref.ino, ref.mtimeMs].every((x) => typeof x === 'number')) return undefined;
      return ref as BlobRef;
    } catch {
      return undefined;
    }
  }

  /** Why `sha256` has no usable reference ('no copy in the store' when it has none at all); undefined when it has one. */
  private async refProblem(sha256: Sha256Hex): Promise<string | undefined> {
    const ref = await this.readRef(sha256);
    if (!ref) return 'no copy in the store';
    const st = await stat(ref.path).catch(() => undefined);
    if (!st?.isFile()) return `${ref.path}, which the store referred to, is gone`;
    if (st.size !== ref.size || st.dev !== ref.dev || st.ino !== ref.ino || st.mtimeMs !== ref.mtimeMs) return `${ref.path}, which the store referred to, has changed since it was verified`;
    return undefined;
  }

  /**
   * Puts a file into the store, hashing it on the way. `src` is a path or an open handle (read from its
   * start, left open: the caller checked what it opened). A file in the store's own scratch folder (a
   * step's output) is linked in after hashing, not copied; any other is cloned (reflink) where the
   * filesystem can, else copied. With `expect`, a size or sha256 that does not match is an IntegrityError
   * (exit 3) and nothing is stored; the size is checked first. A full disk is a DiskFullError naming the
   * blob and the file's size; the temp file is removed either way.
   */
  async putFile(src: string | FileHandle, expect?: Sha256Hex | ExpectedFile): Promise<{ sha256: Sha256Hex; size: number }> {
    const want: ExpectedFile = typeof expect === 'string' ? { sha256: expect } : { ...expect, trusted: false };
    const own = typeof src === 'string' && resolve(src).startsWith(join(resolve(this.root), 'tmp') + sep);
    const { sha256, size } = await this.take(src, want, own ? ['link', 'copy'] : ['clone', 'copy']);
    return { sha256, size };
  }

  /**
   * Takes a file that another cache keeps and never changes in place (a Hugging Face cache blob): a hard
   * link where the filesystem allows (the file is made read-only, under both names), else a reflink, else
   * a verified reference to it. `fh` is the file opened (and checked) by the caller; `path` its real path.
   * It is hashed unless `trusted` (this process verified it, and its identity is unchanged since).
   */
  async adoptFile(fh: FileHandle, path: string, expect: ExpectedFile): Promise<{ sha256: Sha256Hex; size: number; placement: Placement }> {
    return this.take(fh, expect, ['link', 'clone', 'reference'], path);
  }

  private async take(src: string | FileHandle, want: ExpectedFile, ways: ('link' | 'clone' | 'copy' | 'reference')[], realPath?: string): Promise<{ sha256: Sha256Hex; size: number; placement: Placement }> {
    const name = want.name ?? (typeof src === 'string' ? src : 'file');
    const file = want.file ?? (typeof src === 'string' ? src : undefined);
    const mismatch = (expected: string, actual: string) => new IntegrityError(name, expected, actual, { ...(want.hint ? { hint: want.hint } : {}), ...(file ? { file } : {}) });
    const fh = typeof src === 'string' ? await open(src, 'r') : src;
    const tmpDir = join(this.root, 'tmp');
    const tmp = tempPathFor(join(tmpDir, 'blob'));
    try {
      const st = await fh.stat();
      if (want.size !== undefined && st.size !== want.size) throw mismatch(`${want.size} bytes`, `${st.size} bytes`);
      if (want.sha256 && (await this.hasBlob(want.sha256))) {
        // Content-addressed: the bytes are here already. A file of the right size with the expected name
        // is taken at its word only when trusted; otherwise it is hashed (a corrupt source must not pass).
        if (want.trusted) return { sha256: want.sha256, size: st.size, placement: 'present' };
        const { sha256, size } = await hashHandle(fh);
        if (size !== st.size) throw mismatch(`${st.size} bytes`, `${size} bytes`);
        if (sha256 !== want.sha256) throw mismatch(want.sha256, sha256);
        return { sha256, size, placement: 'present' };
      }
      await mkdir(tmpDir, { recursive: true });
      // The path the kernel opened: linking or cloning it takes exactly the checked file, whatever the
      // name points at by now.
      const opened = realPath ?? (typeof src === 'string' ? src : `/proc/self/fd/${fh.fd}`);
      for (const way of ways) {
        if (way === 'link' || way === 'clone') {
          const taken = way === 'link'
            ? await link(opened, tmp).then(() => true, () => false)
            : await copyFile(`/proc/self/fd/${fh.fd}`, tmp, constants.COPYFILE_FICLONE_FORCE).then(() => true, () => false);
          if (!taken) continue;
          const got = await stat(tmp);
          // A link must be the very file opened (a name swapped meanwhile would link something else).
          if (way === 'link' && (got.ino !== st.ino || got.dev !== st.dev)) {
            await rm(tmp, { force: true });
            continue;
          }
          let sha256 = want.sha256;
          let size = got.size;
          if (!want.trusted || !sha256) {
            // Hash what the store now holds (a clone is ours; a link is the file opened, never written in place).
            const h = await hashFile(tmp);
            sha256 = h.sha256;
            size = h.size;
          }
          if (want.size !== undefined && size !== want.size) throw mismatch(`${want.size} bytes`, `${size} bytes`);
          if (want.sha256 && want.sha256 !== sha256) throw mismatch(want.sha256, sha256);
          await this.adoptBlob(tmp, sha256!);
          return { sha256: sha256!, size, placement: way === 'link' ? 'linked' : 'cloned' };
        }
        if (way === 'copy') {
          const { sha256, size } = await copyHashing(fh, tmp);
          if (want.size !== undefined && size !== want.size) throw mismatch(`${want.size} bytes`, `${size} bytes`);
          if (want.sha256 && want.sha256 !== sha256) throw mismatch(want.sha256, sha256);
          await this.adoptBlob(tmp, sha256);
          return { sha256, size, placement: 'copied' };
        }
        // reference: verify what the reference will trust, then record the file's identity.
        let sha256 = want.sha256;
        let size = st.size;
        if (!want.trusted || !sha256) ({ sha256, size } = await hashHandle(fh));
        if (want.size !== undefined && size !== want.size) throw mismatch(`${want.size} bytes`, `${size} bytes`);
        if (want.sha256 && want.sha256 !== sha256) throw mismatch(want.sha256, sha256);
        const ref: BlobRef = { v: 1, path: opened, size: st.size, dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs };
        await writeFileAtomic(this.refFile(sha256!), JSON.stringify(ref));
        return { sha256: sha256!, size, placement: 'referenced' };
      }
      throw new BakeError(`internal: no way to store ${name}`);
    } catch (err) {
      await rm(tmp, { force: true });
      const needed = await fh.stat().then((s) => s.size, () => undefined);
      throw await asDiskFull(err, want.sha256 ? this.blobPath(want.sha256) : join(this.root, 'blobs', 'sha256'), needed,
        `storing ${name} in the store: free disk space at ${this.root}, or set BAKE_STORE to a folder on a larger disk`);
    } finally {
      await rm(tmp, { force: true });
      if (typeof src === 'string') await fh.close();
    }
  }

  async putBytes(data: Uint8Array | string): Promise<{ sha256: Sha256Hex; size: number }> {
    const sha256 = sha256Bytes(data);
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (!(await this.hasBlob(sha256))) await writeFileAtomic(this.blobPath(sha256), data);
    return { sha256, size };
  }

  /**
   * Moves a hashed temp file into place (rename is atomic; an existing blob wins), read-only: for a
   * linked file that goes for the other cache's name too, which never writes a blob in place either.
   */
  private async adoptBlob(tmp: string, sha256: Sha256Hex): Promise<void> {
    const target = this.blobPath(sha256);
    if ((await stat(target).catch(() => undefined))?.isFile()) {
      await unlink(tmp).catch(() => undefined);
      return;
    }
    await mkdir(dirname(target), { recursive: true });
    await chmod(tmp, 0o444).catch(() => undefined); // a linked file of another user keeps its mode
    await rename(tmp, target);
    await rm(this.refFile(sha256), { force: true }); // own bytes now: no reference needed
  }

  /** Stores every file of a directory tree as an artifact. */
  async putTree(dir: string, kind: string, meta: Record<string, unknown> = {}): Promise<{ digest: Sha256Hex; artifact: Artifact }> {
    const files: ArtifactFile[] = [];
    for (const rel of await listTree(dir)) {
      const { sha256, size } = await this.putFile(join(dir, rel));
      files.push({ path: rel, sha256, size });
    }
    return this.putArtifact({ kind, files, meta });
  }

  async putArtifact(artifact: Artifact): Promise<{ digest: Sha256Hex; artifact: Artifact }> {
    const files = [...artifact.files].sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
    const normalized = { ...artifact, files };
    const digest = artifactDigest(normalized);
    const target = join(this.root, 'artifacts', `${digest}.json`);
    try {
      await stat(target);
    } catch {
      await writeFileAtomic(target, prettyJson(normalized));
    }
    return { digest, artifact: normalized };
  }

  async getArtifact(digest: Sha256Hex): Promise<Artifact | undefined> {
    if (!isSha256Hex(digest)) return undefined;
    let text: string;
    try {
      text = await readFile(join(this.root, 'artifacts', `${digest}.json`), 'utf8');
    } catch {
      return undefined;
    }
    const artifact = JSON.parse(text) as Artifact;
    if (artifactDigest(artifact) !== digest) throw new IntegrityError(`artifact ${digest}`, digest, artifactDigest(artifact));
    return artifact;
  }

  /**
   * Places an artifact's files under `dir` (hard links when possible, else clones or copies). On failure
   * the files placed so far are removed; a full disk is a DiskFullError naming `dir` and the bytes needed.
   */
  /**
   * `copy`: never hard-link (for folders whose files the caller then changes, e.g. their times: a link
   * shares its inode with the store blob, and with the Hugging Face cache's blob it was adopted from).
   */
  async materialize(digest: Sha256Hex, dir: string, opts: { copy?: boolean } = {}): Promise<Artifact> {
    const artifact = await this.getArtifact(digest);
    if (!artifact) throw new BakeError(`artifact ${digest} is not in the store ${this.root}`, 'failure', { hint: 'run the step that produces it again (`bake plan` shows which)' });
    this.placed.set(resolve(dir), digest);
    const placed: string[] = [];
    try {
      for (const f of artifact.files) {
        const target = safeJoin(dir, f.path);
        if (!target) throw new BakeError(`artifact ${digest} names an unsafe path: ${f.path}`, 'integrity');
        await mkdir(dirname(target), { recursive: true });
        await rm(target, { force: true });
        placed.push(target);
        const from = await this.blobFile(f.sha256);
        try {
          if (opts.copy) throw new Error('copy asked for');
          await link(from, target);
        } catch {
          // Another filesystem (a referenced file), or no links allowed: a clone where possible, else a copy.
          await copyFile(from, target, constants.COPYFILE_FICLONE);
        }
      }
    } catch (err) {
      for (const p of placed) await rm(p, { force: true });
      // Copies need the artifact's whole size (links need none; a copy is what failed).
      throw await asDiskFull(err, dir, artifact.files.reduce((n, f) => n + f.size, 0));
    }
    return artifact;
  }

  /**
   * The artifact or step whose digest starts with `prefix`: bake prints 12 hex of each (`-> <artifact>`,
   * `cached (<step key>)`), so any unambiguous prefix of at least 12 hex names one. InputError when
   * the prefix is too short, names nothing, or names several (listing them).
   */
  async resolvePrefix(prefix: string): Promise<{ kind: 'artifact' | 'step'; digest: Sha256Hex }> {
    const p = prefix.replace(/^sha256:/, '').toLowerCase();
    if (!/^[0-9a-f]{12,64}$/.test(p)) {
      throw new InputError(`${prefix} is not a digest prefix`, { expected: '12 to 64 hex digits (an artifact digest or a step key, as bake prints them)' });
    }
    const found: { kind: 'artifact' | 'step'; digest: Sha256Hex }[] = [];
    for (const [kind, folder] of [['artifact', 'artifacts'], ['step', 'steps']] as const) {
      const names = await readdir(join(this.root, folder)).catch(() => [] as string[]);
      for (const n of names) {
        const digest = n.slice(0, -'.json'.length);
        if (n.endsWith('.json') && isSha256Hex(digest) && digest.startsWith(p)) found.push({ kind, digest });
      }
    }
    if (found.length === 1) return found[0]!;
    if (found.length === 0) {
      throw new InputError(`no artifact or step in the store ${this.root} starts with ${p}`, {
        hint: 'run the command that made it again, or point BAKE_STORE at the store it was made in',
      });
    }
    throw new InputError(`${p} is ambiguous: ${found.length} entries of the store ${this.root} start with it`, {
      expected: `more digits, one of: ${found.map((f) => `${f.kind} ${f.digest}`).sort().join(', ')}`,
    });
  }

  /** What `bake inspect <prefix>` shows: the artifact the prefix names, or a step's record and its artifact. */
  async describe(prefix: string): Promise<Artifact | { step: StepRecord; artifact: Artifact | undefined }> {
    const found = await this.resolvePrefix(prefix);
    if (found.kind === 'step') {
      const step = JSON.parse(await readFile(join(this.root, 'steps', `${found.digest}.json`), 'utf8')) as StepRecord;
      return { step, artifact: await this.getArtifact(step.artifact) };
    }
    const artifact = await this.getArtifact(found.digest);
    if (!artifact) throw new BakeError(`artifact ${found.digest} vanished from the store ${this.root} while reading it`);
    return artifact;
  }

  async getStep(key: Sha256Hex): Promise<StepRecord | undefined> {
    try {
      const rec = JSON.parse(await readFile(join(this.root, 'steps', `${key}.json`), 'utf8')) as StepRecord;
      if (rec.key !== key) return undefined;
      // A step whose artifact went missing (pruned store) counts as not done.
      if (!(await this.getArtifact(rec.artifact))) return undefined;
      return rec;
    } catch {
      return undefined;
    }
  }

  async putStep(rec: StepRecord): Promise<void> {
    await writeFileAtomic(join(this.root, 'steps', `${rec.key}.json`), prettyJson(rec));
  }
}

/**
 * Sorted relative POSIX paths of the regular files under `dir` (those `select` picks, default all). A
 * symbolic link counts as its file only when that file is inside `dir`; a link leading out or nowhere
 * is refused (FolderEntryError, exit 2). See listFilesInside.
 */
export function listTree(dir: string, select?: (rel: string) => boolean): Promise<string[]> {
  return listFilesInside(dir, select);
}

const IO_BYTES = 4 << 20;

/** sha256 and size of an open file, read from its start (positioned reads: the handle's offset is untouched). */
async function hashHandle(fh: FileHandle): Promise<{ sha256: Sha256Hex; size: number }> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafeSlow(IO_BYTES);
  let size = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, size);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    size += bytesRead;
  }
  return { sha256: hash.digest('hex'), size };
}

async function hashFile(path: string): Promise<{ sha256: Sha256Hex; size: number }> {
  const fh = await open(path, 'r');
  try {
    return await hashHandle(fh);
  } finally {
    await fh.close();
  }
}

/**
 * Copies `src` (from its start) to a new file `dest`, hashing on the way: each buffer is read, hashed and
 * written from where it is, the next read running while the previous buffer is written.
 */
async function copyHashing(src: FileHandle, dest: string): Promise<{ sha256: Sha256Hex; size: number }> {
  const hash: Hash = createHash('sha256');
  const out = await open(dest, 'w');
  const bufs = [Buffer.allocUnsafeSlow(IO_BYTES), Buffer.allocUnsafeSlow(IO_BYTES)];
  const writing: (Promise<void> | undefined)[] = [undefined, undefined];
  let size = 0;
  try {
    for (let i = 0; ; i ^= 1) {
      await writing[i]; // the buffer about to be filled was in the write before last
      const { bytesRead } = await src.read(bufs[i]!, 0, IO_BYTES, size);
      if (bytesRead === 0) break;
      const chunk = bufs[i]!.subarray(0, bytesRead);
      hash.update(chunk);
      writing[i] = writeFully(out, chunk, size);
      writing[i]!.catch(() => undefined); // awaited below or on the next turn
      size += bytesRead;
    }
    await Promise.all(writing);
  } finally {
    await Promise.allSettled(writing);
    await out.close();
  }
  return { sha256: hash.digest('hex'), size };
}

async function writeFully(fh: FileHandle, chunk: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < chunk.length;) {
    const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
