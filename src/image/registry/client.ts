// A small client for the OCI distribution API: base URL, auth challenges and retries. Operations
// (push, pull, tags) are functions in their own files that use it.
import { isRetryableStatus, RetryableError, retryDelayMs, withRetries, type RetryPolicy } from '../../net/retry.js';
import { NetworkError } from '../../util/errors.js';
import { isLoopbackHost } from './ref.js';

export interface RegistryOptions {
  /** Plain HTTP instead of HTTPS (loopback hosts use HTTP unless this is false). */
  insecure?: boolean;
  /** Credentials, passed in: never read from files or the environment here. */
  auth?: { username: string; password: string } | { token: string };
  /** Attempts after the first for transient failures (network, 408, 429, 5xx). Default 4. */
  retries?: number;
  /** First back-off delay in ms; doubles each attempt (jittered, see src/net/retry.ts). Default 250. */
  retryDelayMs?: number;
  /** Most bytes per PATCH (streamed, not held in memory); proxies often cap request bodies. Default 512 MiB. */
  chunkSize?: number;
  fetch?: typeof fetch;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** Built afresh for every attempt, so a retried request resends the same bytes (streams: use noRetry). */
  body?: () => Uint8Array | ReadableStream<Uint8Array> | undefined;
  /** Statuses that count as success; anything else throws NetworkError. */
  ok: number[];
  /** What the request was for, for error messages. */
  what: string;
  /** Do not retry (the caller resumes on its own). */
  noRetry?: boolean;
}

export class RegistryClient {
  readonly baseUrl: string;
  private readonly fetchFn: typeof fetch;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private bearer?: string;
  readonly chunkSize: number;

  constructor(readonly host: string, private readonly opts: RegistryOptions = {}) {
    const insecure = opts.insecure ?? isLoopbackHost(host);
    this.baseUrl = `${insecure ? 'http' : 'https'}://${host}`;
    this.fetchFn = opts.fetch ?? fetch;
    this.retries = opts.retries ?? 4;
    this.retryDelayMs = opts.retryDelayMs ?? 250;
    this.chunkSize = opts.chunkSize ?? 512 * 1024 * 1024;
    if ('token' in (opts.auth ?? {})) this.bearer = (opts.auth as { token: string }).token;
  }

  url(pathOrUrl: string): string {
    return new URL(pathOrUrl, this.baseUrl).toString();
  }

  /** Sends a request, answering one auth challenge and retrying transient failures with back-off. */
  async request(method: string, pathOrUrl: string, ro: RequestOptions): Promise<Response> {
    const url = this.url(pathOrUrl);
    let challenged = false;
    return withRetries({ ...this.policy(), ...(ro.noRetry ? { retries: 0 } : {}) }, async () => {
      for (;;) {
        let res: Response;
        try {
          const body = ro.body?.();
          res = await this.fetchFn(url, {
            method,
            headers: { ...this.authHeader(), ...(ro.headers ?? {}) },
            // duplex: Node's fetch needs it to stream a request body.
            ...(body !== undefined ? { body: body as unknown as BodyInit, ...(body instanceof ReadableStream ? { duplex: 'half' } : {}) } : {}),
            redirect: 'follow',
          });
        } catch (err) {
          const final = new NetworkError(`${ro.what}: cannot reach ${this.host} (${(err as Error).message})`, {
            url,
            cause: err,
            hint: `is the registry running at ${this.baseUrl}? for a plain-HTTP registry pass --insecure`,
          });
          throw new RetryableError((err as Error).message, { cause: err, final });
        }
        if (res.status === 401 && !challenged) {
          challenged = true;
          const www = res.headers.get('www-authenticate');
          await res.body?.cancel();
          if (www && (await this.answerChallenge(www))) continue; // the same attempt, now with a token
          throw await this.failure(res, url, ro.what);
        }
        if (ro.ok.includes(res.status)) return res;
        if (isRetryableStatus(res.status)) {
          throw new RetryableError(`HTTP ${res.status}`, { status: res.status, retryAfter: res.headers.get('retry-after'), final: await this.failure(res, url, ro.what) });
        }
        throw await this.failure(res, url, ro.what);
      }
    });
  }

  /** The shared retry policy (src/net/retry.ts) with this client's budget and first delay. */
  policy(): RetryPolicy {
    return { retries: this.retries, baseDelayMs: this.retryDelayMs, maxRetryAfterMs: 30_000 };
  }

  private authHeader(): Record<string, string> {
    if (this.bearer) return { authorization: `Bearer ${this.bearer}` };
    const auth = this.opts.auth;
    if (auth && 'username' in auth) return { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` };
    return {};
  }

  /** Bearer token flow (distribution token auth): GET realm?service&scope, with Basic credentials if any. */
  private async answerChallenge(www: string): Promise<boolean> {
    const m = /^Bearer\s+(.*)$/i.exec(www);
    if (!m) return false; // Basic: credentials, if any, were already sent
    const params: Record<string, string> = {};
    for (const p of m[1]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!] = p[2]!;
    if (!params.realm) return false;
    const u = new URL(params.realm);
    if (params.service) u.searchParams.set('service', params.service);
    // Several scopes (a cross-repo mount asks for two) come space-separated; token servers take one per param.
    for (const scope of (params.scope ?? '').split(' ').filter(Boolean)) u.searchParams.append('scope', scope);
    const auth = this.opts.auth;
    const headers: Record<string, string> = auth && 'username' in auth ? { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` } : {};
    const res = await this.fetchFn(u, { headers }).catch(() => undefined);
    if (!res?.ok) return false;
    const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) return false;
    this.bearer = token;
    return true;
  }

  /** Delay before retry number `attempt` (0-based), for loops of their own (chunk resumes in push.ts). */
  backoff(attempt: number): number {
    return retryDelayMs(this.policy(), attempt + 1);
  }

  /** A NetworkError carrying the registry's own error code and message (distribution error format). */
  async failure(res: Response, url: string, what: string): Promise<NetworkError> {
    let detail = '';
    try {
      const text = (await res.text()).slice(0, 4096);
      const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      detail = (parsed.errors ?? []).map((e) => `${e.code ?? ''}${e.message ? `: ${e.message}` : ''}`).join('; ');
      if (!detail) detail = text.slice(0, 200);
    } catch {
      /* no JSON body: the status says enough */
    }
    const hint =
      res.status === 401 || res.status === 403
        ? 'the registry refused access: check the credentials and that this account may push to the repository'
        : res.status === 405
          ? 'the registry does not accept this operation (read-only mode or a proxy/mirror?)'
          : res.status === 404
            ? 'check the repository name and tag'
            : undefined;
    return new NetworkError(`${what}: ${this.host} answered ${res.status} ${res.statusText}${detail ? ` (${detail})` : ''}`, {
      status: res.status,
      url,
      ...(hint ? { hint } : {}),
    });
  }
}
