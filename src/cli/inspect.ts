// `bake inspect`: a recipe (with what each target's image runs), a lock entry, a store artifact or an OCI
// layout, as JSON.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { lockfilePath, readLockfile } from '../lock/lockfile.js';
import { loadRecipe } from '../recipe/load.js';
import { runtimeImage } from '../runtime/contract.js';
import { defaultStoreRoot, Store } from '../store/store.js';
import { InputError } from '../util/errors.js';
import type { RunInput } from './types.js';

export async function inspect(input: RunInput): Promise<{ value: unknown; text: string }> {
  const what = input.args[0]!;
  const root = resolve(input.globals.project);
  // bake prints 12 hex of artifact digests and step keys: any unambiguous prefix names one.
  if (/^(sha256:)?[0-9a-fA-F]{12,64}$/.test(what)) {
    const value = await new Store(input.globals.store ?? defaultStoreRoot()).describe(what);
    return { value, text: JSON.stringify(value, null, 2) };
  }
  if (what.startsWith('oci:')) {
    const dir = resolve(root, what.slice(4));
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    return { value: index, text: JSON.stringify(index, null, 2) };
  }
  if (what.includes('/') && !what.endsWith('.yaml')) {
    const lock = await readLockfile(lockfilePath(root));
    const e = lock.models[what];
    if (!e) throw new InputError(`models.lock has no entry ${what}`, { expected: Object.keys(lock.models).join(', ') || '(the lock is empty: run `bake lock <recipe>`)' });
    return { value: e, text: JSON.stringify(e, null, 2) };
  }
  const recipe = await loadRecipe(what, root);
  // What each target's image runs: entrypoint, CMD (a llama-server's settings as flags), health check.
  const images = Object.fromEntries(recipe.targets.map((t) => [t.name, runtimeImage(t) ?? null]));
  const value = { ...recipe, images };
  return { value, text: JSON.stringify(value, null, 2) };
}
