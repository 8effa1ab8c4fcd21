// Where the Hub is, who we are to it and where its files are cached, read from the same environment
// variables huggingface_hub (Python) reads, so both tools share one cache and one configuration.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { InputError } from '../util/errors.js';

export interface HubConfig {
  /** Hub base URL without a trailing slash (HF_ENDPOINT). */
  endpoint: string;
  /** Access token (HF_TOKEN, else the file `huggingface-cli login` wrote). Sent only to `endpoint`'s origin; never written anywhere. */
  token?: string;
  /** The Hugging Face hub cache folder (holds `models--org--name/`). */
  cacheDir: string;
  /** HF_HUB_OFFLINE=1: no network at all; everything comes from `cacheDir`. */
  offline: boolean;
  /** Files downloaded at the same time. */
  concurrency: number;
  /** Connections one large file is fetched over, as parallel Range requests (BAKE_DOWNLOAD_CONNECTIONS; 1: one stream). */
  connections: number;
  /** Attempts after the first for one request (429, 5xx, cut connections); reset when bytes arrive. */
  retries: number;
  /** fetch to use (tests, proxies); default: the global fetch. */
  fetch?: typeof fetch;
  /** Milliseconds without a byte (or without response headers) before a request counts as cut. */
  timeoutMs?: number;
  /** First backoff delay in milliseconds; doubles per attempt, capped at 10 s. */
  retryBaseMs?: number;
}

const TRUE_WORDS = new Set(['1', 'on', 'yes', 'true']);

/**
 * Connections per large file. A CDN limits each connection; eight fill most links (hf_transfer uses
 * many more, for uploads as well), and more cost memory (4 MiB of buffers each) for little gain.
 */
const DEFAULT_CONNECTIONS = 8;

/** Hub tokens are `hf_` plus letters and digits; anything else is a copy/paste accident. */
const TOKEN_SHAPE = /^hf_[A-Za-z0-9]{8,}$/;

export function hubConfigFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: Partial<HubConfig> = {}): HubConfig {
  const endpoint = normalizeEndpoint(overrides.endpoint ?? (env.HF_ENDPOINT || 'https://huggingface.co'));
  const fromFile = overrides.token === undefined && !env.HF_TOKEN?.trim() ? tokenFromFile(env) : undefined;
  const token = overrides.token ?? (env.HF_TOKEN?.trim() || fromFile?.token);
  if (token !== undefined && !TOKEN_SHAPE.test(token)) {
    const where = fromFile ? fromFile.file : 'HF_TOKEN';
    // Never echo the value: it may be a real secret pasted into the wrong place.
    throw new InputError(`${where} does not hold a Hugging Face access token (${token.length} characters)`, {
      field: 'HF_TOKEN',
      ...(fromFile ? { file: fromFile.file } : {}),
      expected: '`hf_` followed by letters and digits, e.g. from https://huggingface.co/settings/tokens',
      hint: fromFile
        ? `replace ${fromFile.file} (\`huggingface-cli login\` writes it) or set HF_TOKEN`
        : 'set HF_TOKEN to a token created on the Hub, or unset it for public repos',
    });
  }
  const cacheDir = resolve(overrides.cacheDir ?? defaultCacheDir(env));
  const offline = overrides.offline ?? TRUE_WORDS.has((env.HF_HUB_OFFLINE ?? '').trim().toLowerCase());
  const concurrency = overrides.concurrency ?? 4;
  const retries = overrides.retries ?? 5;
  const connections = overrides.connections ?? (env.BAKE_DOWNLOAD_CONNECTIONS?.trim() ? Number(env.BAKE_DOWNLOAD_CONNECTIONS.trim()) : DEFAULT_CONNECTIONS);
  if (!Number.isInteger(connections) || connections < 1 || connections > 64) {
    throw new InputError(`BAKE_DOWNLOAD_CONNECTIONS must be a whole number from 1 to 64, got ${JSON.stringify(env.BAKE_DOWNLOAD_CONNECTIONS ?? connections)}`, {
      field: 'BAKE_DOWNLOAD_CONNECTIONS',
      expected: 'connections per large file, 1 to 64 (default 8; 1 fetches each file as one stream)',
    });
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InputError(`hub concurrency must be a positive integer, got ${concurrency}`, { field: 'concurrency' });
  }
  if (!Number.isInteger(retries) || retries < 0) {
    throw new InputError(`hub retries must be a non-negative integer, got ${retries}`, { field: 'retries' });
  }
  const cfg: HubConfig = { endpoint, cacheDir, offline, concurrency, connections, retries };
  if (token !== undefined) cfg.token = token;
  if (overrides.fetch) cfg.fetch = overrides.fetch;
  const envTimeout = Number(env.HF_HUB_DOWNLOAD_TIMEOUT);
  if (overrides.timeoutMs !== undefined) cfg.timeoutMs = overrides.timeoutMs;
  else if (env.HF_HUB_DOWNLOAD_TIMEOUT && Number.isFinite(envTimeout) && envTimeout > 0) cfg.timeoutMs = envTimeout * 1000;
  if (overrides.retryBaseMs !== undefined) cfg.retryBaseMs = overrides.retryBaseMs;
  return cfg;
}

/**
 * When HF_TOKEN is not set, the token `huggingface-cli login` saved, as huggingface_hub reads it:
 * HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token. Read only, never written.
 */
function tokenFromFile(env: NodeJS.ProcessEnv): { token: string; file: string } | undefined {
  const file = env.HF_TOKEN_PATH || join(env.HF_HOME || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface'), 'token');
  try {
    const text = readFileSync(file, 'utf8').trim();
    return text ? { token: text, file } : undefined;
  } catch {
    return undefined;
  }
}

/** Same order as huggingface_hub: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub. */
function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, 'hub');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface', 'hub');
}

function normalizeEndpoint(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new InputError(`HF_ENDPOINT is not a URL: ${JSON.stringify(raw)}`, {
      field: 'HF_ENDPOINT',
      expected: 'an http(s) URL such as https://huggingface.co',
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InputError(`HF_ENDPOINT must be http or https, got ${url.protocol}`, { field: 'HF_ENDPOINT', expected: 'an http(s) URL' });
  }
  if (url.username || url.password) {
    throw new InputError('HF_ENDPOINT must not carry credentials; use HF_TOKEN', { field: 'HF_ENDPOINT' });
  }
  return url.toString().replace(/\/+$/, '');
}

/** Replaces the configured token, and anything shaped like a Hub token, so messages can be shown or logged. */
export function redactToken(text: string, cfg: HubConfig): string {
  let out = text;
  if (cfg.token) out = out.split(cfg.token).join('hf_***');
  return out.replace(/hf_[A-Za-z0-9]{8,}/g, 'hf_***');
}
