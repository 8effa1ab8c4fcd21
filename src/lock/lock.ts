// `bake lock`: resolve every model of a recipe to exact bytes and update models.lock.
// Entries that still match the recipe are kept as they are unless named in `update`.
import { resolveHubModel } from './resolve.js';
import type { HubConfig } from '../hub/config.js';
import type { Recipe } from '../recipe/types.js';
import { InputError } from '../util/errors.js';
import { fragmentDigest } from './lockfile.js';
import { resolveLocalModel } from './local.js';
import { lockKey, type LockEntry, type Lockfile } from './types.js';

export interface LockChange {
  key: string;
  action: 'added' | 'updated' | 'unchanged' | 'removed';
  commit: string;
  previous?: string;
}

export async function lockRecipe(
  recipe: Recipe,
  lock: Lockfile,
  hub: HubConfig,
  opts: { update?: string[]; root?: string } = {},
): Promise<{ lock: Lockfile; changes: LockChange[] }> {
  const update = new Set(opts.update ?? []);
  for (const id of update) {
    if (!recipe.models.some((m) => m.id === id)) {
      throw new InputError(`--update ${id}: recipe ${recipe.name} has no model with that id`, { file: recipe.file, expected: recipe.models.map((m) => m.id).join(', ') });
    }
  }
  const models: Record<string, LockEntry> = { ...lock.models };
  const changes: LockChange[] = [];
  for (const model of recipe.models) {
    const key = lockKey(recipe.name, model.id);
    const old = models[key];
    const fragment = fragmentDigest(model);
    if (old && old.fragment === fragment && !update.has(model.id)) {
      changes.push({ key, action: 'unchanged', commit: old.commit });
      continue;
    }
    const resolved = model.repo ? await resolveHubModel(model, hub) : await resolveLocalModel(model, recipe.file, opts.root);
    const entry: LockEntry = { ...resolved, fragment };
    models[key] = entry;
    const same = old && JSON.stringify({ ...old, fragment: '' }) === JSON.stringify({ ...entry, fragment: '' });
    changes.push({ key, action: !old ? 'added' : same && old.fragment === fragment ? 'unchanged' : 'updated', commit: entry.commit, previous: old?.commit });
  }
  // Models removed from the recipe leave the lock too.
  const prefix = `${recipe.name}/`;
  for (const key of Object.keys(models)) {
    if (key.startsWith(prefix) && !recipe.models.some((m) => lockKey(recipe.name, m.id) === key)) {
      changes.push({ key, action: 'removed', commit: models[key]!.commit });
      delete models[key];
    }
  }
  return { lock: { version: 1, models }, changes };
}
