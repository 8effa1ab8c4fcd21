// Models from a local folder (`path:` in a recipe): locked by the sha256 of every selected file, so a
// local model is pinned exactly like a Hub one. `npm:<package>/<dir>` names a folder inside an
// installed npm package (models that ship in dependencies).
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { digestOf, sha256File } from '../util/digest.js';
import { InputError } from '../util/errors.js';
import { fileMatcher } from '../util/glob.js';
import { listTree } from '../store/store.js';
import type { ModelSpec } from '../recipe/types.js';
import type { LockEntry, LockedFile } from './types.js';

const PICKLE = /\.(bin|pt|pth|pkl|pickle|ckpt)$/i;

export function isPickleFile(path: string): boolean {
  return PICKLE.test(path);
}

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
  for (const rel of await listTree(dir)) {
    if (!match(rel)) continue;
    if (isPickleFile(rel) && !model.allow_pickle.includes(rel)) {
      throw new InputError(`model ${model.id}: ${rel} is a pickle-based file, which can run code when loaded`, {
        file: recipeFile,
        field: `models.${model.id}.allow_pickle`,
        hint: `prefer safetensors; to accept it anyway add "${rel}" to allow_pickle, or exclude it from files`,
      });
    }
    const { sha256, size } = await sha256File(join(dir, rel));
    files.push({ path: rel, size, sha256, lfs: false });
  }
  if (files.length === 0) {
    throw new InputError(`model ${model.id}: no file in ${dir} matches ${JSON.stringify(model.files)}`, { file: recipeFile, field: `models.${model.id}.files` });
  }
  return { source: 'path', repo: model.path!, revision: model.revision, commit: digestOf(files), files };
}
