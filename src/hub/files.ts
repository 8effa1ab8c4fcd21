// Rules for file names coming from a repo listing (untrusted: a server decides them) and the URL a
// file is downloaded from.
import type { HubConfig } from './config.js';

/** Extensions of pickle-based formats: loading them can run arbitrary code. */
const PICKLE_EXTENSIONS = ['.bin', '.pt', '.pth', '.pkl', '.pickle', '.ckpt'];

export function isPickleFile(path: string): boolean {
  const lower = path.toLowerCase();
  return PICKLE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

/**
 * Why a repo path is unsafe to write under a snapshot folder, or undefined when it is fine: it must be
 * relative, POSIX, without `.`/`..`/empty segments, backslashes or control characters.
 */
export function checkRepoPath(path: string): string | undefined {
  if (typeof path !== 'string' || path.length === 0) return 'empty name';
  if (path.length > 1024) return 'name longer than 1024 characters';
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'control character in name';
  if (path.includes('\\')) return 'backslash in name';
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) return 'absolute path';
  const segments = path.split('/');
  if (segments.some((s) => s === '..')) return '`..` segment (would leave the repo folder)';
  if (segments.some((s) => s === '' || s === '.')) return 'empty or `.` segment';
  return undefined;
}

/** `<endpoint>/<repo>/resolve/<revision>/<path>` with every segment escaped. */
export function resolveUrl(cfg: HubConfig, repo: string, revision: string, path: string): string {
  const escapedPath = path.split('/').map(encodeURIComponent).join('/');
  return `${cfg.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${escapedPath}`;
}
