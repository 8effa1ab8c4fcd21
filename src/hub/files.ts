// The URL a repo file is downloaded from. (Its path is checked by src/lock/paths.ts checkModelPath.)
import type { HubConfig } from './config.js';

/** `<endpoint>/<repo>/resolve/<revision>/<path>` with every segment escaped. */
export function resolveUrl(cfg: HubConfig, repo: string, revision: string, path: string): string {
  const escapedPath = path.split('/').map(encodeURIComponent).join('/');
  return `${cfg.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${escapedPath}`;
}
