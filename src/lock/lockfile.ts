// models.lock read/write and the frozen check every command but `bake lock` runs.
// Bytes are deterministic: sorted keys, sorted files, two-space JSON, trailing newline.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Ajv } from 'ajv';
import { digestOf, isSha256Hex } from '../util/digest.js';
import { InputError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { prettyJson } from '../util/json.js';
import { checkModelPath } from './paths.js';
import type { ModelSpec, Recipe } from '../recipe/types.js';
import { lockKey, type LockEntry, type Lockfile } from './types.js';

export const LOCKFILE_NAME = 'models.lock';

const lockSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'models'],
  properties: {
    version: { const: 1 },
    models: {
      type: 'object',
      propertyNames: { pattern: '^[A-Za-z0-9._-]+/[a-z0-9][a-z0-9._-]*$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['source', 'repo', 'revision', 'commit', 'fragment', 'files'],
        properties: {
          source: { enum: ['hub', 'path'] },
          repo: { type: 'string', minLength: 1 },
          revision: { type: 'string', minLength: 1 },
          commit: { type: 'string', pattern: '^[0-9a-f]{40}$|^[0-9a-f]{64}$' },
          fragment: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          files: {
            type: 'array',
            maxItems: 100000,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['path', 'size', 'sha256', 'lfs'],
              properties: {
                path: { type: 'string', minLength: 1, maxLength: 4096 },
                size: { type: 'integer', minimum: 0 },
                sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
                lfs: { type: 'boolean' },
              },
            },
          },
        },
      },
    },
  },
} as const;

const validateLock = new Ajv({ allErrors: false }).compile(lockSchema);

export function lockfilePath(root = process.cwd()): string {
  return resolve(root, LOCKFILE_NAME);
}

export function emptyLockfile(): Lockfile {
  return { version: 1, models: {} };
}

/** Reads models.lock; a missing file is an empty lock, a malformed one a clear error. */
export async function readLockfile(file = lockfilePath()): Promise<Lockfile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyLockfile();
    throw err;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new InputError(`${LOCKFILE_NAME} is not valid JSON: ${(err as Error).message}`, {
      file,
      hint: `restore it from version control, or delete it and run \`bake lock <recipe>\``,
    });
  }
  if (!validateLock(data)) {
    const e = validateLock.errors![0]!;
    const field = e.instancePath.slice(1).replace(/\//g, '.') || '(top level)';
    throw new InputError(`${LOCKFILE_NAME}: ${field} ${e.message ?? 'is invalid'}`, {
      file,
      field,
      hint: 'models.lock is written by `bake lock`; do not edit it by hand (restore it, or run `bake lock <recipe>`)',
    });
  }
  const lock = data as Lockfile;
  for (const [key, entry] of Object.entries(lock.models)) {
    const [recipe, id] = key.split('/') as [string, string];
    const relock = `restore ${LOCKFILE_NAME} from version control, or run \`bake lock ${recipe} --update ${id}\` to pin the model again`;
    const seen = new Set<string>();
    for (const f of entry.files) {
      // The same rule as a Hub listing: a path that could leave the model folder never reaches a fetch.
      const problem = checkModelPath(f.path);
      if (problem) {
        throw new InputError(`${LOCKFILE_NAME}: ${key} lists the file ${JSON.stringify(f.path)}, which is not a path inside the model (${problem})`, {
          file,
          field: `models.${key}.files`,
          expected: 'a relative POSIX path inside the model folder or repo, as `bake lock` writes it',
          hint: relock,
        });
      }
      if (seen.has(f.path)) throw new InputError(`${LOCKFILE_NAME}: ${key} lists ${f.path} twice`, { file, field: `models.${key}.files`, hint: relock });
      seen.add(f.path);
    }
  }
  return lock;
}

/** Canonical bytes of a lockfile: the same lock always serializes to the same bytes. */
export function serializeLockfile(lock: Lockfile): string {
  const models: Record<string, LockEntry> = {};
  for (const key of Object.keys(lock.models).sort()) {
    const e = lock.models[key]!;
    models[key] = { ...e, files: [...e.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)) };
  }
  return prettyJson({ version: 1, models });
}

export async function writeLockfile(lock: Lockfile, file = lockfilePath()): Promise<void> {
  await writeFileAtomic(file, serializeLockfile(lock));
}

/** Digest of the recipe fields that decide what gets locked; quantize/verify changes do not re-lock. */
export function fragmentDigest(model: ModelSpec): string {
  return digestOf({
    repo: model.repo,
    path: model.path,
    revision: model.revision,
    files: model.files,
    allow_pickle: [...model.allow_pickle].sort(),
  });
}

/** What a frozen command reads: the lock entry of every model, checked against the recipe. */
export function frozenEntries(recipe: Recipe, lock: Lockfile, file = lockfilePath()): Map<string, LockEntry> {
  const out = new Map<string, LockEntry>();
  for (const model of recipe.models) {
    const key = lockKey(recipe.name, model.id);
    const entry = lock.models[key];
    if (!entry) {
      throw new InputError(`${LOCKFILE_NAME} has no entry for ${key}`, {
        file,
        field: `models.${key}`,
        hint: `run \`bake lock ${recipe.name}\` and commit ${LOCKFILE_NAME}`,
      });
    }
    if (entry.fragment !== fragmentDigest(model)) {
      const was = entry.source === 'hub' ? `${entry.repo}@${entry.revision}` : entry.repo;
      const now = model.repo ? `${model.repo}@${model.revision}` : model.path;
      throw new InputError(`${LOCKFILE_NAME} is out of date for ${key}: the recipe's repo, revision, files or allow_pickle changed since it was locked (locked ${was}, recipe ${now})`, {
        file,
        field: `models.${key}`,
        hint: `run \`bake lock ${recipe.name} --update ${model.id}\` to re-pin it, then commit ${LOCKFILE_NAME}`,
      });
    }
    if (!isSha256Hex(entry.fragment)) throw new InputError(`${LOCKFILE_NAME}: ${key} has a bad fragment digest`, { file });
    out.set(model.id, entry);
  }
  return out;
}

/** Short digest of every locked file of the given models: the `{models}` tag and provenance label. */
export function modelsDigest(entries: LockEntry[]): string {
  return digestOf(entries.map((e) => ({ repo: e.repo, commit: e.commit, files: e.files.map((f) => [f.path, f.sha256]) })));
}
