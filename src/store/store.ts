// The content-addressed artifact store and the step cache.
//
// Layout under the store root (BAKE_STORE, else $XDG_CACHE_HOME/bake, else ~/.cache/bake):
//   blobs/sha256/<hex>        file contents, named by their sha256
//   artifacts/<hex>.json      an artifact: a tree of files (path -> blob) plus metadata; named by its digest
//   steps/<key>.json          a finished step: its key's inputs and the artifact it produced
// Every write is temp file + rename and every name is a digest of the content, so two processes that
// share a store can only ever race to write the same bytes: neither can corrupt the other.
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, copyFile, link, mkdir, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { digestOf, isSha256Hex, sha256Bytes, type Sha256Hex } from '../util/digest.js';
import { BakeError, InputError, IntegrityError } from '../util/errors.js';
import { canonicalJson, prettyJson } from '../util/json.js';
import { asDiskFull, listFilesInside, safeJoin, tempPathFor, writeFileAtomic } from '../util/fs.js';

/** What a file put into the store must be, and how errors name it. */
export interface ExpectedFile {
  sha256?: Sha256Hex;
  size?: number;
  /** The file as the user knows it (model id, lock entry, path); default its path. */
  name?: string;
  /** The user's file, for the error's `file` field. */
  file?: string;
  /** How to fix a mismatch. */
  hint?: string;
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

  async hasBlob(sha256: Sha256Hex): Promise<boolean> {
    try {
      await stat(this.blobPath(sha256));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Copies a file into the store, hashing while copying. `src` is a path or an open handle (read from
   * its start, left open: the caller checked what it opened). With `expect`, a size or sha256 that does
   * not match is an IntegrityError (exit 3) and nothing is stored; the size is checked before copying.
   * A full disk is a DiskFullError naming the blob and the file's size; the temp copy is removed either way.
   */
  async putFile(src: string | FileHandle, expect?: Sha256Hex | ExpectedFile): Promise<{ sha256: Sha256Hex; size: number }> {
    const want: ExpectedFile = typeof expect === 'string' ? { sha256: expect } : (expect ?? {});
    const name = want.name ?? (typeof src === 'string' ? src : 'file');
    const file = want.file ?? (typeof src === 'string' ? src : undefined);
    const mismatch = (expected: string, actual: string) => new IntegrityError(name, expected, actual, { ...(want.hint ? { hint: want.hint } : {}), ...(file ? { file } : {}) });
    if (want.size !== undefined) {
      const st = typeof src === 'string' ? await stat(src) : await src.stat();
      if (st.size !== want.size) throw mismatch(`${want.size} bytes`, `${st.size} bytes`);
    }
    const tmpDir = join(this.root, 'tmp');
    const tmp = tempPathFor(join(tmpDir, 'blob'));
    const hash = createHash('sha256');
    let size = 0;
    try {
      await mkdir(tmpDir, { recursive: true });
      await pipeline(
        typeof src === 'string' ? createReadStream(src, { highWaterMark: 1 << 20 }) : src.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 }),
        new Transform({
          transform(chunk: Buffer, _enc, cb) {
            hash.update(chunk);
            size += chunk.length;
            cb(null, chunk);
          },
        }),
        createWriteStream(tmp),
      );
      const sha256 = hash.digest('hex');
      // The file may have changed between the size check and the copy: check what was copied.
      if (want.size !== undefined && size !== want.size) throw mismatch(`${want.size} bytes`, `${size} bytes`);
      if (want.sha256 && want.sha256 !== sha256) throw mismatch(want.sha256, sha256);
      await this.adoptBlob(tmp, sha256);
      return { sha256, size };
    } catch (err) {
      await rm(tmp, { force: true });
      const needed = await (typeof src === 'string' ? stat(src) : src.stat()).then((st) => st.size, () => undefined);
      throw await asDiskFull(err, want.sha256 ? this.blobPath(want.sha256) : join(this.root, 'blobs', 'sha256'), needed,
        `storing ${name} in the store: free disk space at ${this.root}, or set BAKE_STORE to a folder on a larger disk`);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async putBytes(data: Uint8Array | string): Promise<{ sha256: Sha256Hex; size: number }> {
    const sha256 = sha256Bytes(data);
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (!(await this.hasBlob(sha256))) await writeFileAtomic(this.blobPath(sha256), data);
    return { sha256, size };
  }

  /** Moves an already-hashed temp file into place (rename is atomic; an existing blob wins). */
  private async adoptBlob(tmp: string, sha256: Sha256Hex): Promise<void> {
    const target = this.blobPath(sha256);
    if (await this.hasBlob(sha256)) return;
    await mkdir(dirname(target), { recursive: true });
    await chmod(tmp, 0o444);
    await rename(tmp, target);
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
   * Places an artifact's files under `dir` (hard links when possible, else copies). On failure the
   * files placed so far are removed; a full disk is a DiskFullError naming `dir` and the bytes needed.
   */
  async materialize(digest: Sha256Hex, dir: string): Promise<Artifact> {
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
        try {
          await link(this.blobPath(f.sha256), target);
        } catch {
          await copyFile(this.blobPath(f.sha256), target);
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

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
