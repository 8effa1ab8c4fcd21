// Parts of a repo's files at a commit, for deciding what a file is before anyone downloads it whole
// (src/lock/pickle.ts): from the cache when the file is there, else with a Range request. Whole files
// (small ONNX graphs whose external data is in question) are pulled into the cache, verified.
import { open, readFile } from 'node:fs/promises';
import type { FileReader } from '../lock/pickle.js';
import type { LockedFile } from '../lock/types.js';
import { NetworkError } from '../util/errors.js';
import { readAt } from '../util/fs.js';
import { snapshotEntryFile } from './cache.js';
import type { HubConfig } from './config.js';
import { resolveUrl } from './files.js';
import { isRetryableStatus, RetryableError, withRetries } from '../net/retry.js';
import { StallTimer } from '../net/stall.js';
import { describeCause, errorText, hubRetryPolicy, refusalError, unreachableError } from './http.js';
import { pullModel } from './pull.js';
import { header, openStream, readErrorBody, type StreamResponse } from './transport.js';

/** A FileReader over `repo@commit`'s locked `files`. */
export function hubFileReader(cfg: HubConfig, repo: string, commit: string, files: LockedFile[]): FileReader {
  const byPath = new Map(files.map((f) => [f.path, f]));
  return {
    async read(path, offset, length) {
      const cached = await snapshotEntryFile(cfg, repo, commit, path);
      if (cached) return readLocal(cached, offset, length);
      if (cfg.offline) {
        throw new NetworkError(`offline mode (HF_HUB_OFFLINE=1): ${path} of ${repo}@${commit.slice(0, 12)} is not in the cache`, { field: 'HF_HUB_OFFLINE' });
      }
      return readRange(cfg, repo, commit, path, offset, length);
    },
    async readWhole(path) {
      let cached = await snapshotEntryFile(cfg, repo, commit, path);
      if (!cached) {
        const file = byPath.get(path);
        if (!file) throw new Error(`internal: ${path} is not among the locked files of ${repo}`);
        await pullModel({ source: 'hub', repo, revision: commit, commit, fragment: '', files: [file] }, cfg);
        cached = await snapshotEntryFile(cfg, repo, commit, path);
      }
      if (!cached) throw new Error(`internal: ${path} of ${repo}@${commit} is not in the cache after a pull`);
      return readFile(cached);
    },
  };
}

async function readLocal(file: string, offset: number, length: number): Promise<Uint8Array> {
  const fh = await open(file, 'r');
  try {
    return await readAt(fh, offset, length);
  } finally {
    await fh.close();
  }
}

/** Bytes [offset, offset + length) of a repo file over HTTP, with the Hub's retry policy. */
async function readRange(cfg: HubConfig, repo: string, commit: string, path: string, offset: number, length: number): Promise<Uint8Array> {
  const url = resolveUrl(cfg, repo, commit, path);
  const ctx = { repo, revision: commit, path };
  const attempt = async (): Promise<Uint8Array> => {
    const retry = (reason: string, extra: { status?: number; retryAfter?: string | null; cause?: unknown } = {}) =>
      new RetryableError(reason, { ...extra, final: unreachableError(cfg, url, ctx, new Error(reason)) });
    const stall = new StallTimer(cfg.timeoutMs ?? 30_000);
    let res: StreamResponse | undefined;
    try {
      res = await openStream(cfg, url, { headers: { range: `bytes=${offset}-${offset + length - 1}`, 'accept-encoding': 'identity' }, signal: stall.signal });
      stall.touch();
      if (res.status === 206 || res.status === 200) {
        // 200: the server ignored Range; skip to `offset` and stop reading once the part is in.
        const skip = res.status === 200 ? offset : 0;
        const parts: Buffer[] = [];
        let seen = 0;
        let kept = 0;
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          stall.touch();
          const from = Math.max(0, skip - seen);
          seen += chunk.length;
          if (from < chunk.length) {
            const piece = chunk.subarray(from, from + (length - kept));
            parts.push(piece);
            kept += piece.length;
          }
          if (kept >= length) break;
        }
        return Buffer.concat(parts);
      }
      if (res.status === 416) return new Uint8Array(0);
      if (isRetryableStatus(res.status) || (res.crossOrigin && res.status === 403)) {
        throw retry(`HTTP ${res.status}`, { status: res.status, retryAfter: header(res, 'retry-after') });
      }
      const text = await readErrorBody(res.body);
      const answered = res;
      throw refusalError(cfg, { status: answered.status, headers: { get: (n: string) => header(answered, n) } }, answered.url, ctx, errorText(text), !answered.crossOrigin);
    } catch (err) {
      if (err instanceof RetryableError || err instanceof NetworkError) throw err;
      throw retry(stall.stalled ? (stall.signal.reason as Error).message : describeCause(err), { cause: err });
    } finally {
      stall.dispose();
      res?.body.destroy();
    }
  };
  return withRetries(hubRetryPolicy(cfg), attempt);
}
