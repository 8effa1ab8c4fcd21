// Writes docker/<recipe>/Dockerfile and docker/docker-bake.hcl into the project (kept in the repo, so a
// user can run plain `docker build` or `docker buildx bake` without bake).
import { readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { loadRecipe } from '../../recipe/load.js';
import type { Recipe, TargetName } from '../../recipe/types.js';
import { writeFileAtomic } from '../../util/fs.js';
import { renderBakeHcl, type BakeHclEntry } from './bakehcl.js';
import { localPathsFor, renderDockerfile } from './generate.js';

export interface BuildFiles {
  /** Absolute path of docker/<recipe>/Dockerfile. */
  dockerfile: string;
  /** The same, relative to the project root (what `docker build -f` takes). */
  dockerfileRel: string;
  /** Absolute path of docker/docker-bake.hcl. */
  bakeHcl: string;
  /** Project-relative paths the build context must hold. */
  contextPaths: string[];
}

function posixRel(root: string, abs: string): string {
  return relative(root, abs).split(sep).join('/');
}

/** What goes in the build context for a recipe's Dockerfile: recipe, lock, local model folders. */
export function contextPathsFor(recipe: Recipe, root: string, lockPath = 'models.lock'): string[] {
  const recipePath = posixRel(root, recipe.file);
  const paths = new Set<string>([recipePath, lockPath]);
  for (const m of recipe.models) for (const p of localPathsFor(m, recipePath)) paths.add(p);
  return [...paths].sort();
}

export async function writeBuildFiles(opts: {
  root: string;
  recipe: Recipe;
  /** Every recipe of the project, for docker-bake.hcl (default: `recipes/*.yaml` loaded, plus `recipe`). */
  allRecipes?: Recipe[];
  bakeImage?: string;
  modelsDigests?: Record<string, Partial<Record<TargetName, string>>>;
}): Promise<BuildFiles> {
  const { root, recipe } = opts;
  const recipePath = posixRel(root, recipe.file);
  const localPaths: Record<string, string[]> = {};
  for (const m of recipe.models) localPaths[m.id] = localPathsFor(m, recipePath);
  const text = renderDockerfile({ recipe, recipePath, localPaths, bakeImage: opts.bakeImage });
  const dockerfile = join(root, 'docker', recipe.name, 'Dockerfile');
  await writeFileAtomic(dockerfile, text);

  const all = new Map<string, Recipe>();
  for (const r of opts.allRecipes ?? (await loadProjectRecipes(root))) all.set(r.name, r);
  all.set(recipe.name, recipe);
  const entries: BakeHclEntry[] = [...all.values()].map((r) => ({
    recipe: r,
    dockerfile: `docker/${r.name}/Dockerfile`,
    modelsDigest: opts.modelsDigests?.[r.name],
  }));
  const bakeHcl = join(root, 'docker', 'docker-bake.hcl');
  await writeFileAtomic(bakeHcl, renderBakeHcl(entries));
  return { dockerfile, dockerfileRel: posixRel(root, dockerfile), bakeHcl, contextPaths: contextPathsFor(recipe, root) };
}

/** recipes/*.yaml that load; a recipe with errors is left out of docker-bake.hcl rather than failing the build of another. */
export async function loadProjectRecipes(root: string): Promise<Recipe[]> {
  let names: string[] = [];
  try {
    names = (await readdir(join(root, 'recipes'))).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch {
    return [];
  }
  const out: Recipe[] = [];
  for (const n of names) {
    try {
      out.push(await loadRecipe(join(root, 'recipes', n), root));
    } catch {
      // skipped: `bake build` of that recipe reports its errors
    }
  }
  return out;
}
