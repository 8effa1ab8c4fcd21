// The one rule for the path of a file inside a model (a Hub repo or a local folder). Every place that
// takes such a path from somewhere it does not control checks it here: a Hub listing (src/lock/resolve.ts),
// a lock entry read from models.lock (src/lock/lockfile.ts), a Hub pull (src/hub/pull.ts) and a local
// fetch (src/lock/local.ts). A path that passes stays inside the folder it is joined to, lexically;
// symbolic links on disk are a separate check (src/util/fs.ts openInside).

/** Longest path accepted, in characters (the Hub allows less). */
export const MAX_MODEL_PATH = 1024;

/**
 * Why `path` is not a usable file path inside a model, or undefined when it is: it must be relative,
 * POSIX (`/` separated), without `.`, `..` or empty segments, backslashes or control characters.
 */
export function checkModelPath(path: unknown): string | undefined {
  if (typeof path !== 'string' || path.length === 0) return 'empty name';
  if (path.length > MAX_MODEL_PATH) return `name longer than ${MAX_MODEL_PATH} characters`;
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'control character in name';
  if (path.includes('\\')) return 'backslash in name';
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) return 'absolute path';
  const segments = path.split('/');
  if (segments.some((s) => s === '..')) return '`..` segment (would leave the model folder)';
  if (segments.some((s) => s === '' || s === '.')) return 'empty or `.` segment';
  return undefined;
}
