// HTTP to the Hub: the token only ever goes to the Hub's own origin (redirects are followed by hand so
// a CDN never sees it), transient failures are retried with backoff, and refusals become errors that
// say what was refused and what to do about it.
import { isRetryableStatus, RetryableError, withRetries, type RetryPolicy } from '../net/retry.js';
import { BodyTooLargeError, readBodyFully, StallTimer } from '../net/stall.js';
import { NetworkError } from '../util/errors.js';
import { redactToken, type HubConfig } from './config.js';

/** What a request was about, so an error can say "revision X not found in Y" rather than "404". */
export interface HubRequestContext {
  repo: string;
  revision?: string;
  path?: string;
}

const MAX_REDIRECTS = 10;

/** The retry policy of every Hub request (API calls and downloads), from the config. */
export function hubRetryPolicy(cfg: HubConfig): RetryPolicy {
  return { retries: cfg.retries, ...(cfg.retryBaseMs !== undefined ? { baseDelayMs: cfg.retryBaseMs } : {}) };
}

export function sameOrigin(a: string, b: string): boolean {
  return new URL(a).origin === new URL(b).origin;
}

/**
 * One request with redirects followed by hand: Authorization is sent to the Hub's origin only, so a
 * redirect to a CDN (or anywhere else) never carries the token. Returns the final response and URL.
 */
export async function fetchFollowing(
  cfg: HubConfig,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal },
): Promise<{ response: Response; url: string; crossOrigin: boolean }> {
  const doFetch = cfg.fetch ?? fetch;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const crossOrigin = !sameOrigin(current, cfg.endpoint);
    const headers: Record<string, string> = { 'user-agent': 'bake (+@huggingface/hub)', ...init.headers };
    if (cfg.token && !crossOrigin) headers.authorization = `Bearer ${cfg.token}`;
    const response = await doFetch(current, {
      method: init.method ?? 'GET',
      headers,
      body: init.body,
      signal: init.signal,
      redirect: 'manual',
    });
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel().catch(() => {});
      current = new URL(location, current).toString();
      continue;
    }
    return { response, url: current, crossOrigin };
  }
  throw new NetworkError(`too many redirects from ${url}`, { url });
}

export interface ResponseLike {
  status: number;
  headers: { get(name: string): string | null };
}

/**
 * Turns a refusal into an error naming what was refused and what to do. The Hub answers:
 * - 401 to a token it does not accept (invalid or expired), whatever was asked;
 * - 401 without a token, and 404 with a valid one, for a repo that does not exist *or* that the
 *   caller may not see (it never admits a private repo exists);
 * - 401 (no token) / 403 (a token whose account did not accept the conditions) for a gated repo's files;
 * and says which in X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) and
 * X-Error-Message where it sends them. Without them, the status and whether the token was sent
 * still tell the cases apart. `fromHub` is false for an answer from another origin (a CDN), which
 * never gets the token.
 */
export function refusalError(cfg: HubConfig, response: ResponseLike, url: string, ctx: HubRequestContext, body = '', fromHub = true): NetworkError {
  const status = response.status;
  const code = response.headers.get('x-error-code') ?? '';
  // Server text is untrusted: no control characters (terminal escapes), bounded, no token.
  const serverMessage = redactToken((response.headers.get('x-error-message') || body).slice(0, 300).replace(/[\u0000-\u001f\u007f]/g, ' ').trim(), cfg);
  // The token goes to the Hub's origin only: an answer from a CDN was not given it.
  const tokenSent = cfg.token !== undefined && fromHub;
  const page = `${cfg.endpoint}/${ctx.repo}`;
  const tokensPage = `${cfg.endpoint}/settings/tokens`;
  const at = ctx.revision ? `@${ctx.revision}` : '';
  const what = `${ctx.repo}${at}${ctx.path ? ` file ${ctx.path}` : ''}`;
  const opts = (field: string, hint: string, expected?: string) => ({ status, url: redactToken(url, cfg), field, hint, ...(expected ? { expected } : {}) });
  const detail = serverMessage ? ` (server said: ${serverMessage})` : '';

  if (status === 401 && tokenSent) {
    // With a token it accepts, the Hub answers 404 (missing or hidden) or 403 (gated): a 401 is the token itself.
    return new NetworkError(`the Hub rejected HF_TOKEN (invalid or expired): HTTP 401 for ${what}${detail}`, opts(
      'HF_TOKEN',
      `create a new read token at ${tokensPage} and set HF_TOKEN to it (or unset HF_TOKEN, and remove a stale token saved by \`huggingface-cli login\`, for public repos)`,
      'a valid, unexpired Hugging Face access token',
    ));
  }
  const gated = code === 'GatedRepo' || ((status === 401 || status === 403) && /\bgated\b|is restricted/i.test(serverMessage));
  if (gated) {
    return new NetworkError(
      tokenSent
        ? `${ctx.repo} is gated: accept the conditions at ${page} (HTTP ${status}: the HF_TOKEN account has not been granted access)${detail}`
        : `${ctx.repo} is gated: accept the conditions at ${page} and set HF_TOKEN (HTTP ${status}; ${cfg.token ? 'HF_TOKEN was not sent to this host' : 'no HF_TOKEN is set'})${detail}`,
      opts(
        'repo',
        tokenSent
          ? `log in to ${cfg.endpoint} as the account that owns HF_TOKEN, accept the conditions at ${page} (some repos need the authors' approval), then run again`
          : `accept the conditions at ${page} with your account, create a read token at ${tokensPage} and set HF_TOKEN`,
      ),
    );
  }
  if (code === 'RevisionNotFound') {
    return new NetworkError(`revision ${JSON.stringify(ctx.revision)} not found in ${ctx.repo} (HTTP ${status})${detail}`, opts(
      'revision',
      `use a branch, tag or commit sha that exists; see ${page}/tree/main`,
      'an existing branch, tag or 40-digit commit sha',
    ));
  }
  if (code === 'EntryNotFound') {
    return new NetworkError(`file ${JSON.stringify(ctx.path)} not found in ${ctx.repo}${at} (HTTP ${status})${detail}`, opts(
      'files',
      `check the file list at ${page}/tree/${ctx.revision ?? 'main'}; if the repo changed, run \`bake lock --update\``,
    ));
  }
  if (status === 401 || code === 'RepoNotFound' || (status === 404 && !ctx.path)) {
    if (!tokenSent) {
      return new NetworkError(`repo ${ctx.repo} does not exist, or it is private/gated and needs a token: set HF_TOKEN (HTTP ${status} from ${cfg.endpoint})${detail}`, opts(
        'repo',
        `check the repo id (${page}); for a private or gated repo, set HF_TOKEN to a read token from ${tokensPage} of an account that can read it`,
      ));
    }
    return new NetworkError(`repo ${ctx.repo} does not exist, or it is private and the HF_TOKEN account cannot read it (HTTP ${status} from ${cfg.endpoint})${detail}`, opts(
      'repo',
      `check the repo id (${page}); if it is private, use a token of an account with read access to it`,
    ));
  }
  if (status === 403) {
    return new NetworkError(`access to ${what} refused (HTTP 403; ${tokenSent ? 'the token in HF_TOKEN was sent' : 'no token was sent'})${detail}`, opts(
      'repo',
      tokenSent
        ? `the HF_TOKEN account may not read ${ctx.repo}: request access at ${page}, or use a token with read permission (fine-grained tokens must list this repo)`
        : `set HF_TOKEN to a read token from ${tokensPage} of an account that can read ${ctx.repo}`,
    ));
  }
  if (status === 404) {
    return new NetworkError(`file ${JSON.stringify(ctx.path)} not found in ${ctx.repo}${at} (HTTP 404)${detail}`, opts(
      'files',
      `check the file list at ${page}/tree/${ctx.revision ?? 'main'}`,
    ));
  }
  if (status === 429) {
    return new NetworkError(`the Hub kept rate-limiting requests for ${ctx.repo} (HTTP 429) after ${cfg.retries} retries${detail}`, opts(
      'repo',
      'wait a few minutes, or set HF_TOKEN (authenticated requests get higher limits)',
    ));
  }
  return new NetworkError(`request for ${what} failed with HTTP ${status}${detail}`, opts(
    'repo',
    status >= 500 ? `the Hub at ${cfg.endpoint} is having trouble; try again later` : 'check HF_ENDPOINT and the repo id',
  ));
}

/** A network-level failure (refused, reset, timed out) after all retries, as a NetworkError. */
export function unreachableError(cfg: HubConfig, url: string, ctx: HubRequestContext, cause: unknown): NetworkError {
  const reason = describeCause(cause);
  return new NetworkError(`could not reach ${cfg.endpoint} for ${ctx.repo}${ctx.path ? ` file ${ctx.path}` : ''}: ${reason}`, {
    url: redactToken(url, cfg),
    field: 'repo',
    hint: 'check the network and HF_ENDPOINT; to work from the local cache only, set HF_HUB_OFFLINE=1',
    cause,
  });
}

export function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = (cause as Error & { cause?: unknown }).cause;
    const code = inner && typeof inner === 'object' && 'code' in inner ? String((inner as { code: unknown }).code) : '';
    const innerMsg = inner instanceof Error ? inner.message : '';
    return [cause.message, code, innerMsg].filter(Boolean).join(': ');
  }
  return String(cause);
}

/**
 * The fetch bake hands to @huggingface/hub for its API calls (model info, tree pages): our redirect
 * and token rules; each attempt reads the whole body before answering, so a connection cut or stalled
 * mid-body is retried like a refused connection or a 429/5xx (with backoff, honouring Retry-After);
 * a stall timer (HF_HUB_DOWNLOAD_TIMEOUT) gives up on an attempt that stops sending; refusals are
 * thrown as NetworkErrors before the library turns them into a bare HubApiError (which drops
 * X-Error-Code and Retry-After).
 */
export function apiFetch(cfg: HubConfig, ctx: HubRequestContext, signal?: AbortSignal): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.toString() : input.url;
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((v, k) => {
      if (k !== 'authorization') headers[k] = v; // we add it ourselves, only for the Hub's origin
    });
    const body = typeof init?.body === 'string' ? init.body : undefined;
    const stallMs = cfg.timeoutMs ?? 30_000;
    return withRetries(hubRetryPolicy(cfg), async () => {
      const stall = new StallTimer(stallMs, signal);
      try {
        let result: Awaited<ReturnType<typeof fetchFollowing>>;
        try {
          result = await fetchFollowing(cfg, url, { method: init?.method, headers, body, signal: stall.signal });
        } catch (err) {
          if (signal?.aborted || err instanceof NetworkError) throw err;
          const reason = stall.stalled ? `no answer for ${stallMs} ms` : describeCause(err);
          throw new RetryableError(reason, { cause: err, final: unreachableError(cfg, url, ctx, new Error(reason)) });
        }
        const { response } = result;
        stall.touch();
        if (response.ok) {
          try {
            const bytes = await readBodyFully(response, { limit: MAX_API_BODY, stall });
            return new Response(bytes as Uint8Array<ArrayBuffer>, { status: response.status, statusText: response.statusText, headers: response.headers });
          } catch (err) {
            if (signal?.aborted) throw err;
            if (err instanceof BodyTooLargeError) {
              throw new NetworkError(`the answer from ${redactToken(url, cfg)} is larger than ${MAX_API_BODY} bytes; refusing to read it`, { url: redactToken(url, cfg) });
            }
            const reason = stall.stalled ? `the answer stopped arriving for ${stallMs} ms` : `the answer was cut short (${describeCause(err)})`;
            throw new RetryableError(reason, { cause: err, final: unreachableError(cfg, url, ctx, new Error(`${reason}, ${cfg.retries + 1} times`)) });
          }
        }
        const text = errorText(await errorBody(response, stall));
        const refusal = refusalError(cfg, response, result.url, ctx, text, !result.crossOrigin);
        if (isRetryableStatus(response.status)) {
          throw new RetryableError(`HTTP ${response.status}`, { status: response.status, retryAfter: response.headers.get('retry-after'), final: refusal });
        }
        throw refusal;
      } finally {
        stall.dispose();
      }
    }, { signal });
  }) as typeof fetch;
}

/** API answers (model info, one page of a tree) are JSON of a few MB at most; more is a broken or hostile server. */
const MAX_API_BODY = 64 * 1024 * 1024;

/** An error answer's text, bounded; '' when it cannot be read. */
async function errorBody(response: Response, stall: StallTimer): Promise<string> {
  try {
    return Buffer.from(await readBodyFully(response, { limit: 64 * 1024, stall })).toString('utf8');
  } catch {
    return '';
  }
}

/** The message inside a Hub JSON error body, or the start of a text one. */
export function errorText(body: string): string {
  try {
    const json = JSON.parse(body) as { error?: unknown; message?: unknown };
    const msg = json.error ?? json.message;
    return typeof msg === 'string' ? msg : '';
  } catch {
    return body.slice(0, 200);
  }
}
