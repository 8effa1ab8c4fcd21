// The loopback Hub's stand-ins for the RAG service's repos (test/support/rag-models.ts): the real repos'
// file layout, architectures and tokenizer kinds, seeded; transformers.js loads both tokenizers offline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '../../src/model/onnx/index.js';
import { startHubServer } from '../support/hub-server.js';
import { BGE_RERANKER_REPO, E5_REPO, ragHubRepos, unigramVocab } from '../support/rag-models.js';

test('intfloat/e5-base-v2 and BAAI/bge-reranker-base stand-ins: layouts, architectures, tokenizers; the same bytes every time', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-standins-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const hub = await startHubServer({ repos: await ragHubRepos(join(dir, 'a')) });
  t.after(() => hub.close());
  const tree = async (repo: string) => ((await (await fetch(`${hub.url}/api/models/${repo}/tree/main?recursive=true`)).json()) as { type: string; path: string }[]).filter((e) => e.type === 'file').map((e) => e.path).sort();
  assert.deepEqual(await tree(E5_REPO), ['1_Pooling/config.json', 'README.md', 'config.json', 'modules.json', 'onnx/model.onnx', 'sentence_bert_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt']);
  assert.deepEqual(await tree(BGE_RERANKER_REPO), ['README.md', 'config.json', 'onnx/model.onnx', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
  const json = async (repo: string, path: string) => (await fetch(`${hub.url}/${repo}/resolve/main/${path}`)).json() as Promise<Record<string, any>>;
  assert.deepEqual([(await json(E5_REPO, 'config.json')).architectures, (await json(E5_REPO, 'tokenizer.json')).model.type], [['BertModel'], 'WordPiece']);
  const bgeConfig = await json(BGE_RERANKER_REPO, 'config.json');
  assert.deepEqual([bgeConfig.architectures, bgeConfig.model_type, bgeConfig.max_position_embeddings], [['XLMRobertaForSequenceClassification'], 'xlm-roberta', 514]);
  assert.equal((await json(BGE_RERANKER_REPO, 'tokenizer.json')).model.type, 'Unigram');
  // Seeded: generated again elsewhere, the same commits (the committed models.lock pins these).
  const again = await startHubServer({ repos: await ragHubRepos(join(dir, 'b')) });
  t.after(() => again.close());
  assert.equal(again.commitOf(E5_REPO), hub.commitOf(E5_REPO));
  assert.equal(again.commitOf(BGE_RERANKER_REPO), hub.commitOf(BGE_RERANKER_REPO));
  // transformers.js (offline) loads both: BERT's [CLS] a [SEP] b [SEP], XLM-R's <s> a </s></s> b </s>.
  const e5 = (await loadTokenizer(join(dir, 'a', 'e5-base-v2-small'))) as unknown as { decode(ids: number[]): string } & ((a: string, o: object) => { input_ids: { data: BigInt64Array } });
  const bge = (await loadTokenizer(join(dir, 'a', 'bge-reranker-base-small'))) as unknown as typeof e5;
  const ids = (tok: typeof e5) => Array.from(tok('query: What is the capital of Australia?', { text_pair: 'Canberra is the capital.' }).input_ids.data, Number);
  assert.equal(e5.decode(ids(e5)), '[CLS] query : what is the capital of australia? [SEP] canberra is the capital. [SEP]');
  assert.equal(bge.decode(ids(bge)), '<s> query: What is the capital of Australia?</s></s> Canberra is the capital.</s>');
  // At the real size the reranker's vocabulary is XLM-R's 250002 pieces, <mask> last.
  const big = unigramVocab(['a b'], 250002);
  assert.equal(big.length, 250002);
  assert.equal(big.at(-1)![0], '<mask>');
});
