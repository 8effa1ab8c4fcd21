// GGUF embedding models in real llama.cpp against onnxruntime on the same generated weights: the
// converted bert and nomic-bert stand-ins give onnxruntime's embeddings (cosine >= 0.999 in F32 and F16)
// through node-llama-cpp (what verify runs) and through the llama-server built here (/v1/embeddings,
// what the images serve); a conversion that does not match its ONNX export fails the gate.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_EVAL_TEXTS } from '../../../src/model/onnx/index.js';
import { convertHfToGguf, requantizeGguf } from '../../../src/quant/gguf/index.js';
import { InputError } from '../../../src/util/errors.js';
import { enforceGates } from '../../../src/verify/gates.js';
import { verifyGguf } from '../../../src/verify/llama/index.js';
import { findOnnxExport, verifyGgufEmbeddings } from '../../../src/verify/llama/embedding.js';
import { cosine } from '../../../src/verify/onnx/metrics.js';
import { GateError } from '../../../src/util/errors.js';
import { writeEncoderModel, type EncoderArch } from '../../support/embedding-models.js';
import { llamaToolsBin, writeRandomLlama } from '../../support/gguf-fixtures.js';

let dir: string;
const TEXTS = DEFAULT_EVAL_TEXTS.slice(0, 8);
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bake-embed-verify-'));
  for (const arch of ['bert', 'nomic-bert'] as const) {
    await writeEncoderModel(join(dir, arch), { arch });
    for (const type of ['F32', 'F16']) await convertHfToGguf(join(dir, arch), join(dir, `${arch}-${type}.gguf`), { type });
    await requantizeGguf(join(dir, `${arch}-F16.gguf`), join(dir, `${arch}-Q8_0.gguf`), { type: 'Q8_0' });
  }
});
after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

describe('verifyGgufEmbeddings (node-llama-cpp against onnxruntime)', () => {
  for (const arch of ['bert', 'nomic-bert'] as EncoderArch[]) {
    for (const ref of ['F32', 'F16']) {
      test(`${arch} ${ref}: llama.cpp's embeddings are onnxruntime's (cosine >= 0.999), Q8_0 close to the ${ref} file`, { timeout: 300_000 }, async () => {
        const report = await verifyGgufEmbeddings(arch, join(dir, `${arch}-${ref}.gguf`), join(dir, `${arch}-Q8_0.gguf`), { min_cosine: 0.99 }, { texts: TEXTS, sourceDir: join(dir, arch) });
        assert.ok(report.metrics.onnx_cosine_min! >= 0.999, `onnx_cosine_min ${report.metrics.onnx_cosine_min}`);
        assert.ok(report.metrics.cosine_min! >= 0.99, `cosine_min ${report.metrics.cosine_min}`);
        assert.ok(report.metrics.cosine_min! < 1, 'Q8_0 changes the numbers a little');
        assert.equal(report.metrics.token_agreement, 1, 'llama.cpp\'s WPM tokenizer splits as the HF tokenizer does');
        assert.equal(report.metrics.texts, TEXTS.length);
        assert.ok(report.metrics.size_ratio! < (ref === 'F32' ? 0.5 : 0.8));
        // The conversion gate is there by default (an export is locked), and the recipe's gate too.
        assert.deepEqual(report.gates.map((g) => [g.gate, g.threshold, g.passed]).sort(), [['min_cosine', 0.99, true], ['min_onnx_cosine', 0.999, true]]);
        assert.equal(report.details?.pooling, arch === 'bert' ? 'cls' : 'mean');
        assert.equal(report.passed, true);
      });
    }
  }

  test('an ONNX export of other weights fails the conversion gate (exit 5) with the reason', { timeout: 300_000 }, async () => {
    const other = join(dir, 'bert-other');
    await writeEncoderModel(other, { arch: 'bert', seed: 99 });
    const report = await verifyGgufEmbeddings('embed', join(dir, 'bert-F16.gguf'), undefined, {}, { texts: TEXTS, sourceDir: other });
    assert.ok(report.metrics.onnx_cosine_min! < 0.9, String(report.metrics.onnx_cosine_min));
    assert.equal(report.passed, false);
    assert.throws(() => enforceGates('embed', report), (e: unknown) => e instanceof GateError && /onnx_cosine_min/.test(e.message) && /conversion/.test(e.hint ?? ''));
  });

  test('without an ONNX export the report says the conversion went unchecked; a requested gate fails naming the fix', { timeout: 300_000 }, async () => {
    const bare = join(dir, 'nomic-no-onnx');
    await cp(join(dir, 'nomic-bert'), bare, { recursive: true });
    await rm(join(bare, 'onnx'), { recursive: true });
    assert.equal(await findOnnxExport(bare), undefined);
    const r = await verifyGgufEmbeddings('embed', join(dir, 'nomic-bert-F16.gguf'), join(dir, 'nomic-bert-Q8_0.gguf'), {}, { texts: TEXTS, sourceDir: bare });
    assert.equal(r.metrics.onnx_cosine_min, undefined);
    assert.match(r.warnings?.join('\n') ?? '', /not checked against onnxruntime.*lock onnx\/model\.onnx/);
    assert.equal(r.passed, true);
    const gated = await verifyGgufEmbeddings('embed', join(dir, 'nomic-bert-F16.gguf'), undefined, { min_onnx_cosine: 0.999 }, { texts: TEXTS, sourceDir: bare });
    assert.equal(gated.passed, false);
    assert.match(gated.gates[0]!.hint ?? '', /no ONNX export/);
  });

  test('task and model kind must agree: an encoder is not verified by perplexity, a decoder not by embeddings', { timeout: 300_000 }, async () => {
    await assert.rejects(verifyGguf('embed', join(dir, 'bert-F32.gguf'), join(dir, 'bert-Q8_0.gguf'), {}),
      (e: unknown) => e instanceof InputError && /text-embedding model/.test(e.message) && /feature-extraction/.test(e.hint ?? ''));
    const llama = join(dir, 'llama');
    await writeRandomLlama(llama, { embd: 64, ff: 128, layers: 1, heads: 4, kvHeads: 2, vocab: 512, tied: true }, 3);
    await convertHfToGguf(llama, join(dir, 'llama.gguf'), { type: 'F16' });
    await assert.rejects(verifyGgufEmbeddings('chat', join(dir, 'llama.gguf'), undefined, {}, { texts: TEXTS }),
      (e: unknown) => e instanceof InputError && /not a text-embedding encoder/.test(e.message));
    await assert.rejects(verifyGgufEmbeddings('embed', join(dir, 'bert-F32.gguf'), undefined, { max_kld: 0.1 }, { texts: TEXTS }),
      (e: unknown) => e instanceof InputError && e.field === 'models.embed.verify.max_kld');
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** /v1/embeddings of the llama-server built here on `gguf`. */
async function serverEmbeddings(bin: string, gguf: string, texts: string[]): Promise<number[][]> {
  const port = await freePort();
  const child = spawn(join(bin, 'llama-server'), ['-m', gguf, '--embedding', '--host', '127.0.0.1', '--port', String(port), '-t', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((r) => child.on('exit', r));
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null || i > 300) throw new Error(`llama-server did not come up:\n${log.slice(-3000)}`);
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const res = await fetch(`http://127.0.0.1:${port}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: texts }) });
    const body = (await res.json()) as { data: { index: number; embedding: number[] }[] };
    assert.equal(res.status, 200, JSON.stringify(body));
    return body.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
  } finally {
    child.kill();
    await exited;
  }
}

test('the llama-server built here serves the converted files with --embedding: /v1/embeddings equals node-llama-cpp\'s and onnxruntime\'s', { timeout: 600_000 }, async () => {
  const bin = await llamaToolsBin();
  for (const arch of ['bert', 'nomic-bert']) {
    const report = await verifyGgufEmbeddings(arch, join(dir, `${arch}-F16.gguf`), undefined, {}, { texts: TEXTS, sourceDir: join(dir, arch) });
    for (const type of ['F32', 'F16']) {
      const served = await serverEmbeddings(bin, join(dir, `${arch}-${type}.gguf`), TEXTS);
      assert.equal(served.length, TEXTS.length);
      // Normalized (embd_normalize 2), so cosine is what compares; both ends computed the same pooling.
      const norms = served.map((v) => Math.hypot(...v));
      assert.ok(norms.every((n) => Math.abs(n - 1) < 1e-4), `unit vectors: ${norms.join(', ')}`);
      const againstRef = await verifyGgufEmbeddings(arch, join(dir, `${arch}-${type}.gguf`), undefined, {}, { texts: TEXTS, sourceDir: join(dir, arch) });
      assert.ok(againstRef.metrics.onnx_cosine_min! >= 0.999);
      // The server and node-llama-cpp run the same llama.cpp on the same file: the same embedding.
      const { vectors } = await (async () => {
        const { withModel } = await import('../../../src/verify/llama/runner.js');
        return withModel(join(dir, `${arch}-${type}.gguf`), async (m) => {
          const ctx = await m.createEmbeddingContext({ contextSize: 512, threads: 1 });
          try {
            const v: number[][] = [];
            for (const t of TEXTS) v.push([...(await ctx.getEmbeddingFor(t)).vector]);
            return { vectors: v };
          } finally {
            await ctx.dispose();
          }
        });
      })();
      const c = served.map((v, i) => cosine(v, vectors[i]!));
      assert.ok(Math.min(...c) > 0.99999, `${arch} ${type}: llama-server vs node-llama-cpp ${Math.min(...c)}`);
    }
    assert.ok(report.passed);
  }
});
