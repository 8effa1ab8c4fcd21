// The server's Prometheus metrics (prom-client): requests by route and status, request latency, batch
// sizes and forward-pass time per model, tokens, model load time, plus the process's own (RSS, CPU).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ServerMetrics {
  registry: Registry;
  requests: Counter<'route' | 'status'>;
  latency: Histogram<'route'>;
  batchSize: Histogram<'model'>;
  inference: Histogram<'model'>;
  tokens: Counter<'model'>;
  loadSeconds: Gauge<'model' | 'source'>;
  ready: Gauge;
}

export function createMetrics(): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'bake_' });
  const m: ServerMetrics = {
    registry,
    requests: new Counter({ name: 'bake_requests_total', help: 'HTTP requests answered, by route and status', labelNames: ['route', 'status'], registers: [registry] }),
    latency: new Histogram({ name: 'bake_request_duration_seconds', help: 'Time from request to response, by route', labelNames: ['route'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] }),
    batchSize: new Histogram({ name: 'bake_batch_size', help: 'Inputs per forward pass (micro-batching), by model', labelNames: ['model'], buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers: [registry] }),
    inference: new Histogram({ name: 'bake_inference_duration_seconds', help: 'Time of one batched forward pass, by model', labelNames: ['model'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] }),
    tokens: new Counter({ name: 'bake_input_tokens_total', help: 'Input tokens processed (after truncation), by model', labelNames: ['model'], registers: [registry] }),
    loadSeconds: new Gauge({ name: 'bake_model_load_seconds', help: 'Time to make a model servable at start (check or fetch, then open), by model and where its bytes came from', labelNames: ['model', 'source'], registers: [registry] }),
    ready: new Gauge({ name: 'bake_ready', help: '1 once every model is loaded', registers: [registry] }),
  };
  return m;
}
