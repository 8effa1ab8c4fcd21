// Small ranged reads of repo files (peek.ts: the first bytes of a file, a ZIP's directory) over
// node:http(s), redirects followed by hand with the same rule as API calls: the token goes to the Hub's
// origin only. Whole files go through download.ts, which reads bodies into its own buffers
// (src/net/http1.ts) with the same rule.
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { NetworkError } from '../util/errors.js';
import type { HubConfig } from './config.js';
import { sameOrigin } from './http.js';

export interface StreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The URL that answered (after redirects). */
  url: string;
  /** Whether that URL is on another origin than the Hub (a CDN). */
  crossOrigin: boolean;
  body: IncomingMessage;
}

const MAX_REDIRECTS = 10;

export function header(res: { headers: IncomingHttpHeaders }, name: string): string | null {
  const v = res.headers[name.toLowerCase()];
  return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
}

/** GET `url`, following redirects; the body is left unread for the caller to stream. */
export async function openStream(
  cfg: HubConfig,
  url: string,
  opts: { headers?: Record<string, string>; signal?: AbortSignal },
): Promise<StreamResponse> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const crossOrigin = !sameOrigin(current, cfg.endpoint);
    const headers: Record<string, string> = { 'user-agent': 'bake (+@huggingface/hub)', ...opts.headers };
    if (cfg.token && !crossOrigin) headers.authorization = `Bearer ${cfg.token}`;
    const res = await get(current, headers, opts.signal);
    const location = res.headers.location;
    if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && location) {
      res.resume(); // drain so the connection can be reused
      current = new URL(location, current).toString();
      continue;
    }
    return { status: res.statusCode ?? 0, headers: res.headers, url: current, crossOrigin, body: res };
  }
  throw new NetworkError(`too many redirects from ${url}`, { url });
}

function get(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<IncomingMessage> {
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', headers, signal }, resolve);
    req.on('error', reject);
    req.end();
  });
}

/** Reads a (small) error body as text, bounded so a hostile server cannot make us buffer much. */
export async function readErrorBody(body: IncomingMessage, limit = 4096): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      parts.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= limit) break;
    }
  } catch {
    // an error body cut short is still worth showing
  }
  body.destroy();
  return Buffer.concat(parts).subarray(0, limit).toString('utf8');
}
