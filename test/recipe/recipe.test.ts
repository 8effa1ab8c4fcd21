import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRecipe } from '../../src/recipe/load.js';
import { InputError } from '../../src/util/errors.js';

const good = `# yaml-language-server: $schema=../schema/recipe.schema.json
image:
  name: registry.example.com/ml/rag-service
  version: 1.4.0
models:
  - id: e5
    repo: intfloat/e5-base-v2
    revision: main
    files: ["*.json", "onnx/model.onnx"]
    task: feature-extraction
    quantize:
      format: onnx-int8
      per_channel: true
    verify:
      min_cosine: 0.99
  - id: chat
    repo: org/chat
    quantize: { format: gguf, type: Q4_K_M }
    targets: [llamacpp]
targets:
  cpu: {}
  llamacpp:
    base: local/llama-server:latest
`;

async function failure(text: string): Promise<InputError> {
  try {
    await parseRecipe(text, '/proj/recipes/bad.yaml');
  } catch (err) {
    assert.ok(err instanceof InputError, `expected InputError, got ${err}`);
    return err;
  }
  assert.fail('recipe was accepted');
}

test('a valid recipe loads with defaults filled in', async () => {
  const r = await parseRecipe(good, '/proj/recipes/rag-service.yaml');
  assert.equal(r.name, 'rag-service');
  assert.equal(r.models.length, 2);
  assert.equal(r.models[1]!.revision, 'main');
  assert.deepEqual(r.models[1]!.files, ['*']);
  assert.deepEqual(r.models[0]!.allow_pickle, []);
  assert.deepEqual(r.targets.map((t) => t.name), ['cpu', 'llamacpp']);
  // Legacy target names keep their meaning: cpu serves ONNX, llamacpp runs llama-server.
  assert.deepEqual(r.targets.map((t) => [t.server.kind, t.server.port, t.models]), [['onnx', 8080, ['e5']], ['llama-server', 8080, ['chat']]]);
  assert.equal(r.targets[0]!.server.health?.path, '/health');
  assert.equal(r.targets.find((t) => t.name === 'llamacpp')!.base, 'local/llama-server:latest');
  assert.ok(r.targets.find((t) => t.name === 'cpu')!.base.length > 0);
  assert.deepEqual(r.image.tags, ['{version}-{target}', '{version}', 'models-{models}-{target}']);
});

test('an unknown key names file, line, column, field and the allowed keys', async () => {
  const e = await failure(good.replace('      per_channel: true', '      per_chanel: true'));
  assert.equal(e.file, '/proj/recipes/bad.yaml');
  assert.equal(e.line, 13);
  assert.equal(e.column, 7);
  assert.equal(e.field, 'models[0].quantize.per_chanel');
  assert.match(e.message, /unknown key "per_chanel"/);
  assert.match(e.message, /per_channel/);
});

test('a target of a new name must say what it runs', async () => {
  const e = await failure(good.replace('  cpu: {}', '  tpu: {}'));
  assert.equal(e.field, 'targets.tpu.server.kind');
  assert.equal(e.line, 21);
  assert.match(e.expected!, /onnx \| llama-server \| vllm \| none/);
  const bad = await failure(good.replace('  cpu: {}', '  cpu: { server: { kind: gpu } }'));
  assert.equal(bad.field, 'targets.cpu.server.kind');
  assert.match(bad.message, /"onnx", "llama-server", "vllm", "none"/);
});

test('a bad enum value names the allowed values', async () => {
  const e = await failure(good.replace('type: Q4_K_M', 'type: Q3_X'));
  assert.equal(e.field, 'models[1].quantize.type');
  assert.equal(e.line, 18);
  assert.match(e.message, /"Q4_K_M"/);
});

test('an unknown quantize format is refused', async () => {
  const e = await failure(good.replace('format: onnx-int8', 'format: awq9'));
  assert.match(e.message, /unknown format "awq9"/);
  assert.equal(e.line, 12);
});

test('repo and path are exclusive; ids are unique; YAML syntax errors have positions', async () => {
  let e = await failure(good.replace('    repo: org/chat\n', ''));
  assert.match(e.message, /exactly one of "repo".*"path"/);
  assert.equal(e.line, 16);
  e = await failure(good.replace('id: chat', 'id: e5'));
  assert.match(e.message, /already used/);
  e = await failure(good.replace('  version: 1.4.0', '  version: [1.4.0'));
  assert.ok(e.line! >= 4);
  assert.match(e.message, /invalid YAML/);
});

test('a missing required key and a wrong type are reported', async () => {
  let e = await failure(good.replace(/image:\n  name: .*\n/, 'image:\n'));
  assert.match(e.message, /missing required key "name"/);
  assert.equal(e.field, 'image');
  e = await failure(good.replace('min_cosine: 0.99', 'min_cosine: high'));
  assert.equal(e.field, 'models[0].verify.min_cosine');
  assert.match(e.message, /must be number/);
});

test('a model naming an undeclared target is refused', async () => {
  const e = await failure(good.replace('targets: [llamacpp]', 'targets: [cuda]'));
  assert.match(e.message, /target "cuda" is not declared/);
});

test('targets are servers: several may share a kind, each carries the models it lists, and mismatches are refused', async () => {
  const fleet = `image: { name: r.example.com/fleet }
models:
  - { id: chat, repo: org/chat, quantize: { format: gguf, type: Q4_K_M } }
  - { id: embed, repo: org/embed, quantize: { format: gguf, type: Q8_0 } }
  - { id: vad, repo: org/vad, quantize: { format: onnx-int8 } }
targets:
  chat: { server: { kind: llama-server, port: 8081, args: [--ctx-size, "8192"] }, models: [chat] }
  embed: { server: { kind: llama-server, health: { path: /health, interval: 5 } }, models: [embed] }
  cpu: { server: { kind: onnx } }
  all: { base: scratch }
`;
  const r = await parseRecipe(fleet, '/proj/recipes/fleet.yaml');
  const by = Object.fromEntries(r.targets.map((t) => [t.name, t]));
  assert.deepEqual(by.chat!.models, ['chat']);
  assert.deepEqual(by.chat!.server.args, ['--ctx-size', '8192']);
  assert.equal(by.chat!.server.port, 8081);
  assert.equal(by.embed!.server.health?.interval, 5);
  assert.deepEqual(by.cpu!.models, ['vad'], 'an onnx server carries the ONNX models by default');
  assert.equal(by.all!.server.kind, 'none');
  assert.deepEqual(by.all!.models, ['chat', 'embed', 'vad'], 'a models-only image carries everything');
  let e = await failure(fleet.replace('models: [embed] }', 'models: [embed, vad] }'));
  assert.match(e.message, /target embed runs llama-server, which cannot serve model vad/);
  assert.equal(e.field, 'targets.embed.models[1]');
  e = await failure(fleet.replace('models: [embed] }', 'models: [chat, embed] }'));
  assert.match(e.message, /serves one model/);
  e = await failure(fleet.replace('models: [chat] }', 'models: [nope] }'));
  assert.match(e.message, /no model has id "nope"/);
  e = await failure(fleet.replace('  all: { base: scratch }', '  bake: { base: scratch }'));
  assert.match(e.message, /taken by a stage/);
  e = await failure(fleet.replace('  all: { base: scratch }', '  web: { base: scratch, server: { kind: onnx } }'));
  assert.match(e.message, /base scratch has nothing to run/);
});

test('verify.data and quantize.calibration.data: folders of samples with preprocessing, checked field by field', async () => {
  const withData = good.replace('    verify:\n      min_cosine: 0.99', `      mode: static
      calibration: { data: { path: data/calib, kind: images, preprocess: { resize: [224, 224], normalize: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } } } }
    verify:
      data: { path: data/eval, kind: npy, input: pixel_values, limit: 20 }
      decode: { type: ctc, dictionary: keys.txt }
      max_cer: 0.02
      min_decision_agreement: 0.99
      decision_threshold: 0.4`);
  const r = await parseRecipe(withData, '/proj/recipes/data.yaml');
  assert.deepEqual(r.models[0]!.verify.data, { path: 'data/eval', kind: 'npy', input: 'pixel_values', limit: 20 });
  assert.deepEqual((r.models[0]!.quantize as { calibration?: unknown }).calibration, { data: { path: 'data/calib', kind: 'images', preprocess: { resize: [224, 224], normalize: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } } } });
  const kind = await failure(withData.replace('kind: npy', 'kind: video'));
  assert.equal(kind.field, 'models[0].verify.data.kind');
  assert.match(kind.message, /"images", "audio", "npy"/);
  const key = await failure(withData.replace('resize: [224, 224]', 'size: [224, 224]'));
  assert.equal(key.field, 'models[0].quantize.calibration.data.preprocess.size');
  assert.match(key.message, /allowed keys: resize, normalize, layout, channels/);
  const path = await failure(withData.replace('data: { path: data/eval, kind: npy', 'data: { kind: npy'));
  assert.match(path.message, /missing required key "path"/);
});

test('embedding and rerank: defaults filled, one of the two per ONNX text model, default_prefix among the prefixes', async () => {
  const embed = good.replace('    task: feature-extraction\n', '    task: feature-extraction\n    embedding: { prefixes: { query: "query: ", passage: "passage: " } }\n');
  const r = await parseRecipe(embed, '/proj/recipes/rag.yaml');
  assert.deepEqual(r.models[0]!.embedding, { pooling: 'mean', normalize: true, prefixes: { query: 'query: ', passage: 'passage: ' }, max_tokens: 512 });
  assert.equal(r.models[0]!.rerank, undefined);
  const rerank = await parseRecipe(good.replace('    task: feature-extraction\n', '    task: text-classification\n    rerank: { max_tokens: 256 }\n'), '/proj/recipes/rag.yaml');
  assert.deepEqual(rerank.models[0]!.rerank, { activation: 'sigmoid', max_tokens: 256 });
  let e = await failure(embed.replace('embedding: {', 'rerank: {}\n    embedding: {'));
  assert.match(e.message, /an embedder or a reranker, not both/);
  e = await failure(embed.replace('passage: "passage: " }', 'passage: "passage: " }, default_prefix: doc'));
  assert.equal(e.field, 'models[0].embedding.default_prefix');
  assert.match(e.expected ?? '', /query, passage/);
  e = await failure(embed.replace('{ prefixes:', '{ pooling: max, prefixes:'));
  assert.equal(e.field, 'models[0].embedding.pooling');
  e = await failure(good.replace('    quantize: { format: gguf, type: Q4_K_M }', '    embedding: {}\n    quantize: { format: gguf, type: Q4_K_M }'));
  assert.match(e.message, /for ONNX text models/);
});

test('recipes/rag-service.yaml loads: embed (e5, mean + L2 + query/passage prefixes) and rerank (bge), targets cpu and cuda', async () => {
  const { loadRecipe } = await import('../../src/recipe/load.js');
  const r = await loadRecipe('rag-service', new URL('../..', import.meta.url).pathname);
  assert.deepEqual(r.models.map((m) => [m.id, m.repo, m.quantize.format]), [['embed', 'intfloat/e5-base-v2', 'onnx-int8'], ['rerank', 'BAAI/bge-reranker-base', 'onnx-int8']]);
  assert.deepEqual(r.models[0]!.embedding?.prefixes, { query: 'query: ', passage: 'passage: ' });
  assert.equal(r.models[1]!.rerank?.activation, 'sigmoid');
  assert.deepEqual(r.targets.map((t) => [t.name, t.server.kind, t.server.device, t.models]), [['cpu', 'onnx', 'cpu', ['embed', 'rerank']], ['cuda', 'onnx', 'cuda', ['embed', 'rerank']]]);
  assert.equal(r.image.tags[0], '{version}-e5-base-int8-{target}');
});
