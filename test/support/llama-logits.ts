// llama.cpp's logits (node-llama-cpp, CPU) at every position of one sequence: the reference the
// forward pass is held to. The KV cache is F32 and flash attention off, so llama.cpp computes in float32
// throughout (its default F16 cache alone moves logits by ~1e-3).
import type { Token } from 'node-llama-cpp';
import { evalTokens, withModel } from '../../src/verify/llama/runner.js';

export async function llamaCppLogits(gguf: string, text: string, maxTokens: number): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  return withModel(gguf, async (model) => {
    const tokens = evalTokens(model, text).slice(0, maxTokens);
    const context = await model.createContext({
      contextSize: tokens.length + 32, batchSize: tokens.length + 32, threads: 1, flashAttention: false,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
    });
    try {
      const seq = context.getSequence();
      const out = await seq.controlledEvaluate(tokens.map((t) => [t as Token, { generateNext: { logits: true } }] as const) as Parameters<typeof seq.controlledEvaluate>[0]);
      const logits = out.map((o, i) => {
        const map = o?.next.logits;
        if (!map) throw new Error(`no logits at position ${i}`);
        const row = new Float32Array(map.size);
        for (const [k, v] of map) row[k] = v;
        return row;
      });
      return { tokens, logits };
    } finally {
      await context.dispose();
    }
  });
}
