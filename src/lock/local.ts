// Models from a local folder (`path:` in a recipe): locked by the sha256 of every selected file, so a
// local model is pinned exactly like a Hub one. `npm:<package>/<dir>` names a folder inside an
// installed npm package (models that ship in dependencies). Files are read only inside the folder:
// a symbolic link may point at a file in it, never out of it. Files that can run code when loaded
// are refused unless allow_pickle names them (src/lock/pickle.ts decides, for Hub repos too).
import { existsSync } from 'node:fs';
import { stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { digestOf, sha256File } from '../util/digest.js';
import { InputError } from '../util/errors.js';
import { FolderEntryError, openInside, readAt } from '../util/fs.js';
import { fileMatcher } from '../util/glob.js';
import { listTree, type ArtifactFile, type Store } from '../store/store.js';
import type { ModelSpec, Recipe } from '../recipe/types.js';
import { LOCKFILE_NAME } from './lockfile.js';
import { checkModelPath } from './paths.js';
import { refuseUnsafeFiles, type FileReader } from './pickle.js';
import { lockKey, type LockEntry, type LockedFile } from './types.js';

/** Absolute folder a `path:` value names, relative to the recipe file or inside an npm package. */
export function localModelDir(model: ModelSpec, recipeFile: string, projectRoot = process.cwd()): string {
  const p = model.path!;
  if (p.startsWith('npm:')) {
    const spec = p.slice(4);
    const parts = spec.split('/');
    const pkgName = spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
    const sub = parts.slice(spec.startsWith('@') ? 2 : 1).join('/');
    // Walk up node_modules folders as Node does; packages with an `exports` map may hide package.json.
    for (let d = resolve(projectRoot); ; d = dirname(d)) {
      const candidate = join(d, 'node_modules', pkgName);
      if (existsSync(join(candidate, 'package.json'))) return join(candidate, sub);
      if (dirname(d) === d) break;
    }
    throw new InputError(`model ${model.id}: npm package ${pkgName} is not installed`, { field: `models.${model.id}.path`, hint: `run \`npm ci\` (or \`npm install ${pkgName}\`)` });
  }
  return resolve(dirname(recipeFile), p);
}

/**
 * Errors about a local folder's files, with the model they belong to. A symbolic link may point at a
 * file inside the model folder (followed, its content is what gets locked); a link that leads outside
 * the folder or nowhere is refused, naming the link.
 */
function inModel(model: ModelSpec, err: unknown, opts: { field?: string; hint?: string } = {}): unknown {
  if (!(err instanceof FolderEntryError)) return err;
  return new InputError(`model ${model.id}: ${err.message}`, {
    file: err.file,
    field: opts.field ?? `models.${model.id}.path`,
    expected: err.expected,
    hint: err.problem === 'outside' || err.problem === 'dangling'
      ? `copy the file into the model folder instead of linking to it (a Hugging Face cache snapshot, whose files link to ../../blobs, is read with \`repo:\` and HF_HUB_OFFLINE=1)${opts.hint ? `; ${opts.hint}` : ''}`
      : (opts.hint ?? err.hint),
    cause: err,
  });
}

/** Reads a local model's files for the pickle check, each opened inside the folder. */
function folderReader(dir: string): FileReader {
  const withFile = async <T>(path: string, fn: (fh: FileHandle) => Promise<T>): Promise<T> => {
    const fh = await openInside(dir, path);
    try {
      return await fn(fh);
    } finally {
      await fh.close();
    }
  };
  return {
    read: (path, offset, length) => withFile(path, (fh) => readAt(fh, offset, length)),
    readWhole: (path) => withFile(path, (fh) => fh.readFile()),
  };
}

/** Lock entry of a local folder: every file the patterns select, with size and sha256. */
export async function resolveLocalModel(model: ModelSpec, recipeFile: string, projectRoot = process.cwd()): Promise<Omit<LockEntry, 'fragment'>> {
  const dir = localModelDir(model, recipeFile, projectRoot);
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new InputError(`model ${model.id}: local folder ${dir} does not exist`, { file: recipeFile, field: `models.${model.id}.path`, hint: 'fix the path (relative to the recipe file) or use npm:<package>/<dir>' });
  }
  const match = fileMatcher(model.files);
  const files: LockedFile[] = [];
  let selected: string[];
  try {
    selected = await listTree(dir, match);
  } catch (err) {
    throw inModel(model, err);
  }
  for (const rel of selected) {
    const fh = await openInside(dir, rel).catch((err: unknown) => {
      throw inModel(model, err);
    });
    try {
      const { sha256, size } = await sha256File(fh);
      files.push({ path: rel, size, sha256, lfs: false });
    } finally {
      await fh.close();
    }
  }
  if (files.length === 0) {
    throw new InputError(`model ${model.id}: no file in ${dir} matches ${JSON.stringify(model.files)}`, { file: recipeFile, field: `models.${model.id}.files` });
  }
  await refuseUnsafeFiles(model, files, folderReader(dir), dir, recipeFile).catch((err: unknown) => {
    throw inModel(model, err);
  });
  return { source: 'path', repo: model.path!, revision: model.revision, commit: digestOf(files), files };
}

/**
 * The fetch step for a local model: every file of its lock entry into the store. Each is opened inside
 * the model folder (links may not lead out; the opened file is checked, not just its name) and must
 * have the locked size and sha256 (IntegrityError, exit 3). A locked file that is gone is exit 2 naming
 * the model, the lock entry and the file.
 */
export async function storeLocalModel(store: Store, recipe: Pick<Recipe, 'name' | 'file'>, model: ModelSpec, entry: LockEntry, projectRoot = process.cwd()): Promise<ArtifactFile[]> {
  const dir = localModelDir(model, recipe.file, projectRoot);
  const key = lockKey(recipe.name, model.id);
  const relock = `run \`bake lock ${recipe.name} --update ${model.id}\` to pin the folder as it is now, then commit ${LOCKFILE_NAME}`;
  const field = `models.${key}.files`;
  const out: ArtifactFile[] = [];
  for (const f of entry.files) {
    const problem = checkModelPath(f.path);
    if (problem) {
      throw new InputError(`model ${model.id}: ${LOCKFILE_NAME} entry ${key} lists ${JSON.stringify(f.path)}, which is not a path inside the model folder (${problem})`, { field, hint: relock });
    }
    let fh: FileHandle;
    try {
      fh = await openInside(dir, f.path);
    } catch (err) {
      if (err instanceof FolderEntryError && err.problem === 'missing') {
        throw new InputError(`model ${model.id}: ${join(dir, f.path)} is pinned by ${LOCKFILE_NAME} entry ${key} but does not exist`, {
          file: join(dir, f.path),
          field,
          expected: `the file ${f.path} (${f.size} bytes, sha256 ${f.sha256}) in ${dir}`,
          hint: `put the file back, or if it was removed on purpose ${relock}`,
        });
      }
      throw inModel(model, err, { field, hint: relock });
    }
    try {
      const stored = await store.putFile(fh, {
        sha256: f.sha256,
        size: f.size,
        name: `${join(dir, f.path)} (model ${model.id}, ${LOCKFILE_NAME} entry ${key})`,
        file: join(dir, f.path),
        hint: `the file is not what ${LOCKFILE_NAME} pinned: restore it, or if the change is intended ${relock}`,
      });
      out.push({ path: f.path, ...stored });
    } finally {
      await fh.close();
    }
  }
  return out;
}
