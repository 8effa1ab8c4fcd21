// One measurement of a running llama-server (its base URL): the fixed workload at a fixed concurrency.
// Chat: streamed /v1/chat/completions; time to first token on the client's clock (what a user waits,
// queueing included), prompt and generation tokens/s from llama-server's own `timings` of each request.
// Embeddings: /v1/embeddings inputs/s on the client's clock (the endpoint reports no timings).
import { CHAT_PROMPTS, EMBEDDING_INPUTS, type Workload } from './workload.js';
import { NetworkError } from '../util/errors.js';

export interface Measurement {
  requests: number;
  errors: number;
  /** The first failed request's reason, when some failed. */
  error?: string;
  ttft_p50_ms?: number;
  ttft_p95_ms?: number;
  /** Generated tokens per second per request (llama-server timings.predicted_per_second), mean. */
  gen_tps?: number;
  /** Prompt tokens per second per request (timings.prompt_per_second), mean. */
  prompt_tps?: number;
  /** Embedding inputs per second (client clock). */
  embeddings_per_s?: number;
  wall_s: number;
}

/** Where each number comes from, as the report says it. */
export const METRIC_SOURCES: Record<string, string> = {
  ttft_p50_ms: 'client clock: request sent to first streamed token',
  ttft_p95_ms: 'client clock: request sent to first streamed token',
  gen_tps: 'llama-server timings.predicted_per_second (mean over requests)',
  prompt_tps: 'llama-server timings.prompt_per_second (mean over requests)',
  embeddings_per_s: 'client clock: inputs answered / wall time (/v1/embeddings has no timings)',
  rss_bytes: 'llama-server process resident set after the run (/proc VmHWM when readable, else ps rss)',
};

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return Number.NaN;
  const pos = (s.length - 1) * p;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

interface Timings { prompt_per_second?: number; predicted_per_second?: number }

/** One streamed chat completion: client TTFT and the server's timings from the last chunk. */
async function chatRequest(url: string, prompt: string, maxTokens: number): Promise<{ ttft: number; timings?: Timings }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens, stream: true, temperature: 0, ignore_eos: true, cache_prompt: false }),
  });
  if (!res.ok || !res.body) throw new NetworkError(`${url}/v1/chat/completions answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
  let ttft: number | undefined;
  let firstEnd: number | undefined;
  let timings: Timings | undefined;
  let buffer = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') continue;
      const msg = JSON.parse(data) as { choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[]; timings?: Timings };
      const text = msg.choices?.some((c) => typeof c.delta?.content === 'string' && c.delta.content.length > 0);
      // A token that is part of a UTF-8 character streams nothing yet: then the first answer past the role chunk counts.
      if (text) ttft ??= performance.now() - t0;
      else if (msg.choices?.some((c) => c.finish_reason)) firstEnd ??= performance.now() - t0;
      if (msg.timings) timings = msg.timings;
    }
  }
  ttft ??= firstEnd;
  if (ttft === undefined) throw new NetworkError(`${url}/v1/chat/completions streamed no token`);
  return { ttft, timings };
}

async function embeddingRequest(url: string, input: string): Promise<void> {
  const res = await fetch(`${url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input }) });
  const body = (await res.json()) as { data?: unknown[] };
  if (!res.ok || !body.data?.length) throw new NetworkError(`${url}/v1/embeddings answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}`);
}

/** Runs `n` tasks, at most `concurrency` at once, in order of index. */
async function pool<T>(n: number, concurrency: number, task: (i: number) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const out: PromiseSettledResult<T>[] = new Array(n);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i).then((value) => ({ status: 'fulfilled', value }) as const, (reason: unknown) => ({ status: 'rejected', reason }) as const);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return out;
}

export async function measure(url: string, w: Workload): Promise<Measurement> {
  // One request first: the server's first compute allocates buffers; it is not what the settings cost.
  if (w.kind === 'chat') await chatRequest(url, CHAT_PROMPTS[0]!, 2);
  else await embeddingRequest(url, EMBEDDING_INPUTS[0]!);
  const t0 = performance.now();
  if (w.kind === 'embedding') {
    const r = await pool(w.requests, w.concurrency, (i) => embeddingRequest(url, EMBEDDING_INPUTS[i % EMBEDDING_INPUTS.length]!));
    const wall = (performance.now() - t0) / 1000;
    const ok = r.filter((x) => x.status === 'fulfilled').length;
    firstError(r, url);
    return { requests: w.requests, errors: w.requests - ok, ...errorOf(r), embeddings_per_s: ok / wall, wall_s: wall };
  }
  const r = await pool(w.requests, w.concurrency, (i) => chatRequest(url, CHAT_PROMPTS[i % CHAT_PROMPTS.length]!, w.maxTokens));
  const wall = (performance.now() - t0) / 1000;
  firstError(r, url);
  const ok = r.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
  const mean = (xs: number[]): number | undefined => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined);
  const ttfts = ok.map((x) => x.ttft);
  return {
    requests: w.requests,
    errors: w.requests - ok.length,
    ...errorOf(r),
    ttft_p50_ms: percentile(ttfts, 0.5),
    ttft_p95_ms: percentile(ttfts, 0.95),
    gen_tps: mean(ok.flatMap((x) => (typeof x.timings?.predicted_per_second === 'number' ? [x.timings.predicted_per_second] : []))),
    prompt_tps: mean(ok.flatMap((x) => (typeof x.timings?.prompt_per_second === 'number' ? [x.timings.prompt_per_second] : []))),
    wall_s: wall,
  };
}

function errorOf(r: PromiseSettledResult<unknown>[]): { error?: string } {
  const failed = r.find((x): x is PromiseRejectedResult => x.status === 'rejected');
  return failed ? { error: String((failed.reason as Error)?.message ?? failed.reason) } : {};
}

/** Every request failing is not a measurement: the first error says why. */
function firstError(r: PromiseSettledResult<unknown>[], url: string): void {
  if (r.length && r.every((x) => x.status === 'rejected')) {
    const reason = (r[0] as PromiseRejectedResult).reason as Error;
    throw reason instanceof NetworkError ? reason : new NetworkError(`benchmark requests to ${url} failed: ${reason?.message ?? String(reason)}`);
  }
}
