// The onnx server's HTTP API (fastify): text-embeddings-inference's POST /embed and /rerank (request and
// response shapes of TEI's router/src/http/types.rs), OpenAI's POST /v1/embeddings, GET /health (503
// until every model is loaded), GET /info and GET /metrics (Prometheus). Bounds: body size, inputs per
// request, tokens per input (truncated, or refused with 413, as the request's `truncate` says). A
// malformed request gets a 4xx JSON error; the server keeps serving.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { l2normalize, sigmoid, TooManyTokensError } from '../../model/onnx/index.js';
import { BakeError } from '../../util/errors.js';
import type { ServerMetrics } from './metrics.js';
import type { ServedModel } from './models.js';

export interface ServerLimits {
  /** Largest request body in bytes (413 beyond). */
  bodyLimit: number;
  /** Most inputs (texts, passages) in one request (413 beyond); TEI's max_client_batch_size. */
  maxInputs: number;
  /** Truncate over-long inputs when a request does not say (TEI's --auto-truncate); default false: 413. */
  autoTruncate: boolean;
}

export const DEFAULT_LIMITS: ServerLimits = { bodyLimit: 2 * 1024 * 1024, maxInputs: 256, autoTruncate: false };

export interface ServerState {
  ready: boolean;
  models: ServedModel[];
  /** Per model id: what it is doing while the server starts. */
  progress: Record<string, string>;
}

/** A request error with its HTTP status (TEI's error_type names the kind). */
class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly kind: 'Validation' | 'Unhealthy' | 'Tokenizer' | 'Backend' | 'NotFound' = 'Validation') {
    super(message);
  }
}

const stringOrStrings = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] };
const direction = { type: 'string', enum: ['right', 'left', 'Right', 'Left'] };
const EMBED_BODY = {
  type: 'object', required: ['inputs'],
  properties: { inputs: stringOrStrings, truncate: { type: ['boolean', 'null'] }, truncation_direction: direction, normalize: { type: 'boolean' }, prompt_name: { type: ['string', 'null'] }, dimensions: { type: ['integer', 'null'] }, model: { type: 'string' } },
};
const RERANK_BODY = {
  type: 'object', required: ['query', 'texts'],
  properties: { query: { type: 'string' }, texts: { type: 'array', items: { type: 'string' } }, truncate: { type: ['boolean', 'null'] }, truncation_direction: direction, raw_scores: { type: 'boolean' }, return_text: { type: 'boolean' }, model: { type: 'string' } },
};
const OPENAI_BODY = {
  type: 'object', required: ['input'],
  properties: { input: stringOrStrings, model: { type: 'string' }, encoding_format: { type: 'string', enum: ['float', 'base64'] }, dimensions: { type: 'integer' }, user: { type: 'string' } },
};

interface EmbedBody { inputs: string | string[]; truncate?: boolean | null; truncation_direction?: string; normalize?: boolean; prompt_name?: string | null; dimensions?: number | null; model?: string }
interface RerankBody { query: string; texts: string[]; truncate?: boolean | null; truncation_direction?: string; raw_scores?: boolean; return_text?: boolean; model?: string }
interface OpenAIBody { input: string | string[]; model?: string; encoding_format?: 'float' | 'base64'; dimensions?: number; user?: string }

const isOpenAI = (req: FastifyRequest) => req.url.startsWith('/v1/');

function sendError(req: FastifyRequest, reply: FastifyReply, status: number, message: string, kind: string): FastifyReply {
  reply.code(status);
  if (isOpenAI(req)) {
    // OpenAI's error shape: the openai SDK reads error.message / type / code.
    return reply.send({ error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', param: null, code: status === 404 ? 'model_not_found' : null } });
  }
  return reply.send({ error: message, error_type: kind });
}

export function buildServer(state: ServerState, metrics: ServerMetrics, limits: ServerLimits = DEFAULT_LIMITS, log: (line: string) => void = () => {}): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: limits.bodyLimit,
    // Malformed means refused: no type coercion ("inputs": 5 is not the text "5").
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError | BakeError | HttpError, req, reply) => {
    if (err instanceof HttpError) return sendError(req, reply, err.status, err.message, err.kind);
    if (err instanceof TooManyTokensError) return sendError(req, reply, 413, `Input validation error: ${err.message}; ask to truncate ("truncate": true) or send shorter texts`, 'Validation');
    if ('validation' in err && err.validation) return sendError(req, reply, 422, `Input validation error: ${err.message}`, 'Validation');
    if (err instanceof BakeError) return sendError(req, reply, 422, err.message, 'Tokenizer');
    const status = (err as FastifyError).statusCode;
    if (status && status >= 400 && status < 500) return sendError(req, reply, status, err.message, 'Validation');
    log(`error answering ${req.method} ${req.url}: ${(err as Error).stack ?? String(err)}`);
    return sendError(req, reply, 500, `inference failed: ${(err as Error).message}`, 'Backend');
  });
  app.setNotFoundHandler((req, reply) => sendError(req, reply, 404, `no route ${req.method} ${req.url}; see /embed, /rerank, /v1/embeddings, /health, /info, /metrics`, 'NotFound'));

  const whenReady = async (): Promise<void> => {
    if (!state.ready) throw new HttpError(503, 'the models are still loading; GET /health answers 200 once they are', 'Unhealthy');
  };

  /** The model of `kind` a request names (id or Hub repo), or the only one; `lenient`: an unknown name falls back to the only one. */
  const pick = (kind: 'embed' | 'rerank', name: string | undefined, lenient: boolean): ServedModel => {
    const all = state.models.filter((m) => m.kind === kind);
    if (!all.length) throw new HttpError(404, `this server has no ${kind === 'embed' ? 'embedding' : 'reranking'} model (models: ${state.models.map((m) => `${m.id} (${m.kind})`).join(', ')})`, 'NotFound');
    const named = name !== undefined ? all.find((m) => m.id === name || m.repo === name) : undefined;
    if (named) return named;
    if (all.length === 1 && (name === undefined || lenient)) return all[0]!;
    throw new HttpError(name === undefined ? 422 : 404, name === undefined ? `name a model: ${all.map((m) => m.id).join(', ')}` : `the model \`${name}\` does not exist; ${kind} models: ${all.map((m) => m.id).join(', ')}`, name === undefined ? 'Validation' : 'NotFound');
  };

  const checkCount = (n: number, what: string): void => {
    if (n === 0) throw new HttpError(422, `Input validation error: \`${what}\` cannot be empty`);
    if (n > limits.maxInputs) throw new HttpError(413, `Input validation error: batch size ${n} > maximum allowed batch size ${limits.maxInputs}`);
  };

  const checkDirection = (d: string | undefined): void => {
    if (d !== undefined && d.toLowerCase() === 'left') throw new HttpError(422, 'Input validation error: only right truncation is supported (truncation_direction: right)');
  };

  /** Pooled embeddings of `texts` with `prefix`, tokens counted; over-long texts refused unless `truncate`. */
  async function embed(m: ServedModel, inputs: string[], prefix: string, truncate: boolean): Promise<{ vectors: Float32Array[]; tokens: number }> {
    const texts = inputs.map((t) => prefix + t);
    if (!truncate) m.text!.count(texts, undefined, m.maxTokens, false);
    const out = await m.embed!.submit(texts);
    const tokens = out.reduce((n, o) => n + o.tokens, 0);
    metrics.tokens.inc({ model: m.id }, tokens);
    return { vectors: out.map((o) => o.vector), tokens };
  }

  const prefixOf = (m: ServedModel, promptName: string | null | undefined): string => {
    const spec = m.embedding!;
    if (promptName === undefined || promptName === null) return spec.default_prefix ? spec.prefixes[spec.default_prefix]! : '';
    const p = spec.prefixes[promptName];
    if (p === undefined) throw new HttpError(422, `Input validation error: prompt_name \`${promptName}\` is not one of the model's prompts (${Object.keys(spec.prefixes).join(', ') || 'none declared'})`);
    return p;
  };

  const checkDimensions = (dims: number | null | undefined, v: Float32Array): void => {
    if (dims !== undefined && dims !== null && dims !== v.length) throw new HttpError(422, `Input validation error: this model's embeddings have ${v.length} dimensions, not ${dims}`);
  };

  app.post('/embed', { schema: { body: EMBED_BODY }, preHandler: whenReady }, async (req) => {
    const body = req.body as EmbedBody;
    const m = pick('embed', body.model, false);
    const inputs = typeof body.inputs === 'string' ? [body.inputs] : body.inputs;
    checkCount(inputs.length, 'inputs');
    checkDirection(body.truncation_direction);
    const { vectors } = await embed(m, inputs, prefixOf(m, body.prompt_name), body.truncate ?? limits.autoTruncate);
    const normalize = body.normalize ?? true;
    return vectors.map((v) => {
      checkDimensions(body.dimensions, v);
      return Array.from(normalize ? l2normalize(Float32Array.from(v)) : v);
    });
  });

  app.post('/rerank', { schema: { body: RERANK_BODY }, preHandler: whenReady }, async (req) => {
    const body = req.body as RerankBody;
    const m = pick('rerank', body.model, false);
    checkCount(body.texts.length, 'texts');
    checkDirection(body.truncation_direction);
    const pairs = body.texts.map((t) => [body.query, t] as const);
    if (!(body.truncate ?? limits.autoTruncate)) m.text!.count(pairs.map((p) => p[0]), pairs.map((p) => p[1]), m.maxTokens, false);
    const out = await m.score!.submit(pairs);
    metrics.tokens.inc({ model: m.id }, out.reduce((n, o) => n + o.tokens, 0));
    const raw = body.raw_scores === true || m.rerank!.activation === 'none';
    return out
      .map((o, index) => ({ index, ...(body.return_text ? { text: body.texts[index]! } : {}), score: raw ? o.score : sigmoid(o.score) }))
      .sort((a, b) => b.score - a.score || a.index - b.index);
  });

  app.post('/v1/embeddings', { schema: { body: OPENAI_BODY }, preHandler: whenReady }, async (req) => {
    const body = req.body as OpenAIBody;
    // Clients often send their own default model name: with one embedder, any name reaches it (as TEI does).
    const m = pick('embed', body.model, true);
    const inputs = typeof body.input === 'string' ? [body.input] : body.input;
    checkCount(inputs.length, 'input');
    const { vectors, tokens } = await embed(m, inputs, prefixOf(m, undefined), limits.autoTruncate);
    const normalize = m.embedding!.normalize;
    return {
      object: 'list',
      data: vectors.map((v, index) => {
        const e = normalize ? l2normalize(Float32Array.from(v)) : v;
        checkDimensions(body.dimensions, e);
        return { object: 'embedding', index, embedding: body.encoding_format === 'base64' ? Buffer.from(e.buffer, e.byteOffset, e.byteLength).toString('base64') : Array.from(e) };
      }),
      model: m.id,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  });

  app.get('/health', async (_req, reply) => {
    if (!state.ready) return reply.code(503).send({ status: 'loading', models: state.progress });
    return { status: 'ok', models: state.models.map((m) => ({ id: m.id, kind: m.kind, file: m.file, inputs: m.inputs, outputs: m.outputs })) };
  });

  app.get('/info', async () => ({
    ready: state.ready,
    max_client_batch_size: limits.maxInputs,
    max_body_bytes: limits.bodyLimit,
    auto_truncate: limits.autoTruncate,
    models: state.models.map((m) => ({ id: m.id, kind: m.kind, repo: m.repo, max_input_length: m.maxTokens || undefined, ...(m.embedding ? { pooling: m.embedding.pooling, normalize: m.embedding.normalize, prompts: m.embedding.prefixes } : {}) })),
  }));

  app.get('/metrics', async (_req, reply) => {
    metrics.ready.set(state.ready ? 1 : 0);
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  return app;
}
