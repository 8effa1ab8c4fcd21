// A llama-server target's server.settings: read from the recipe, checked against the flags of the
// bundled build (flags.json), written as the image's CMD (the runtime contract) and shown by
// `bake inspect`. A typo is a recipe error naming the key and its line, before anything is built.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadRecipe } from '../../src/recipe/load.js';
import { runtimeImage, serverArgs } from '../../src/runtime/contract.js';
import { parseServerHelp } from '../../src/runtime/llama-server/help.js';
import { flagByName, FLAGS_BUILD, SERVER_FLAGS } from '../../src/runtime/llama-server/flags.js';
import { checkServerArgs, settingsArgs } from '../../src/runtime/llama-server/settings.js';
import { InputError } from '../../src/util/errors.js';
import { bake } from '../support/cli.js';
import { FLEET_MODELS } from '../support/fleet.js';

/** Lines as llama-server --help prints them (column 40 starts the description). */
const HELP = `----- common params -----

-c,    --ctx-size N                     size of the prompt context (default: 0, 0 = loaded from model)
                                        (env: LLAMA_ARG_CTX_SIZE)
-fa,   --flash-attn [on|off|auto]       set Flash Attention use ('on', 'off', or 'auto', default: 'auto')
                                        (env: LLAMA_ARG_FLASH_ATTN)
-kvo,  --kv-offload, -nkvo, --no-kv-offload
                                        whether to enable KV cache offloading (default: enabled)
                                        (env: LLAMA_ARG_KV_OFFLOAD)
-ctk,  --cache-type-k TYPE              KV cache data type for K
                                        allowed values: f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1
                                        (default: f16)
                                        (env: LLAMA_ARG_CACHE_TYPE_K)
-lm,   --load-mode MODE                 model loading mode (default: auto)
                                        - auto: mmap, unless a device does not support it
                                        - mlock: force system to keep model in RAM
                                        - mmap+mlock: mmap + force system to keep model in RAM
                                        (env: LLAMA_ARG_LOAD_MODE)
-ngl,  --gpu-layers, --n-gpu-layers N   max. number of layers to store in VRAM, either an exact number,
                                        'auto', or 'all' (default: auto)
-sm,   --split-mode {none,layer,row,tensor}
                                        how to split the model across multiple GPUs

----- example-specific params -----

--pooling {none,mean,cls,last,rank}     pooling type for embeddings, use model default if unspecified
-cb,   --cont-batching, -nocb, --no-cont-batching
                                        whether to enable continuous batching (a.k.a dynamic batching)
--embedding, --embeddings               restrict to only support embedding use case
`;

describe('parseServerHelp', () => {
  test('names, negations, values, allowed values, words and env of every flag', () => {
    const flags = parseServerHelp(HELP);
    const by = (n: string) => flags.find((f) => f.names.includes(n))!;
    assert.deepEqual(flags.map((f) => f.names[f.names.length - 1]), ['--ctx-size', '--flash-attn', '--kv-offload', '--cache-type-k', '--load-mode', '--n-gpu-layers', '--split-mode', '--pooling', '--cont-batching', '--embeddings']);
    assert.deepEqual(by('--ctx-size'), { names: ['-c', '--ctx-size'], section: 'common', value: 'N', env: 'LLAMA_ARG_CTX_SIZE' });
    assert.deepEqual(by('--flash-attn').values, ['on', 'off', 'auto']);
    assert.equal(by('--flash-attn').optionalValue, true);
    assert.deepEqual(by('--kv-offload').negations, ['-nkvo', '--no-kv-offload']);
    assert.equal(by('--kv-offload').value, undefined, 'a head on a line of its own is read whole');
    assert.deepEqual(by('--cache-type-k').values, ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'iq4_nl', 'q5_0', 'q5_1']);
    assert.deepEqual(by('--load-mode').values, ['auto', 'mlock', 'mmap+mlock']);
    assert.deepEqual(by('--n-gpu-layers').words, ['auto', 'all']);
    assert.deepEqual(by('--split-mode').values, ['none', 'layer', 'row', 'tensor']);
    assert.equal(by('--pooling').section, 'example-specific');
    assert.deepEqual(by('--cont-batching').negations, ['-nocb', '--no-cont-batching']);
  });

  test('the committed table (flags.json) names the build it was read from and has the fleet\'s flags', () => {
    assert.match(FLAGS_BUILD, /commit [0-9a-f]{7}/);
    for (const f of ['--ctx-size', '--batch-size', '--ubatch-size', '--cache-type-k', '--cache-type-v', '--flash-attn', '--n-gpu-layers', '--parallel', '--cont-batching', '--cache-reuse', '--threads', '--embedding', '--pooling', '--load-mode']) {
      assert.ok(flagByName(f), f);
    }
    assert.ok(SERVER_FLAGS.length > 150);
  });
});

describe('settingsArgs', () => {
  test('values, switches (on and off), on/off enums from booleans, numbers and words; in the order given', () => {
    assert.deepEqual(settingsArgs({
      'ctx-size': 8192, 'ubatch-size': 128, 'cache-type-k': 'q8_0', 'cache-type-v': 'q8_0', 'flash-attn': true, 'n-gpu-layers': 'all',
      parallel: 4, 'cont-batching': false, 'cache-reuse': 256, threads: 2, embedding: true, pooling: 'mean',
    }), [
      '--ctx-size', '8192', '--ubatch-size', '128', '--cache-type-k', 'q8_0', '--cache-type-v', 'q8_0', '--flash-attn', 'on', '--n-gpu-layers', 'all',
      '--parallel', '4', '--no-cont-batching', '--cache-reuse', '256', '--threads', '2', '--embedding', '--pooling', 'mean',
    ]);
    assert.deepEqual(settingsArgs({ 'no-kv-offload': true, 'cont-batching': true, embedding: false }), ['--no-kv-offload', '--cont-batching']);
    assert.deepEqual(settingsArgs({ 'gpu-layers': 99 }), ['--gpu-layers', '99'], 'any long spelling of a flag, written as given');
    assert.deepEqual(settingsArgs({ embeddings: true }), ['--embeddings']);
  });

  test('mlock: this build folded --mlock into --load-mode, so mlock: true is --load-mode mmap+mlock', () => {
    assert.equal(flagByName('--mlock'), undefined);
    assert.deepEqual(settingsArgs({ mlock: true }), ['--load-mode', 'mmap+mlock']);
    assert.deepEqual(settingsArgs({ mlock: false }), []);
  });

  test('errors name the key: unknown flag (with the nearest), wrong value, switch given a value, dashes, runtime-owned flags', () => {
    const fails = (settings: Record<string, string | number | boolean>, re: RegExp, key: string) => assert.throws(() => settingsArgs(settings, (k) => ({ field: `settings.${k}` })), (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.equal(e.field, `settings.${key}`);
      assert.match(e.message + (e.expected ?? '') + (e.hint ?? ''), re);
      return true;
    });
    fails({ 'ubatch-szie': 64 }, /no flag --ubatch-szie \(did you mean --ubatch-size/, 'ubatch-szie');
    fails({ 'cache-type-k': 'q9_0' }, /one of f32, f16, bf16, q8_0/, 'cache-type-k');
    fails({ 'ctx-size': 'big' }, /a number/, 'ctx-size');
    fails({ 'n-gpu-layers': 'most' }, /a number or auto, all/, 'n-gpu-layers');
    fails({ pooling: 'max' }, /none, mean, cls, last, rank/, 'pooling');
    fails({ 'cont-batching': 'yes' }, /switch and takes true or false/, 'cont-batching');
    fails({ 'ctx-size': true }, /a value \(N\)/, 'ctx-size');
    fails({ '--ctx-size': 5 }, /without its dashes/, '--ctx-size');
    fails({ port: 9000 }, /set server\.port/, 'port');
    fails({ model: 'x.gguf' }, /GGUF file/, 'model');
  });

  test('server.args: flags must exist and not be the runtime\'s; values pass through', () => {
    checkServerArgs(['--metrics', '--ctx-size', '4096', '-fa', 'on', '--threads=2', '--override-kv', 'x=int:-1']);
    assert.throws(() => checkServerArgs(['--ctx-size', '1', '--flash-atn', 'on'], (i) => ({ field: `args[${i}]` })), (e: unknown) => e instanceof InputError && e.field === 'args[2]' && /did you mean --flash-attn/.test(e.message));
    assert.throws(() => checkServerArgs(['--port', '9000']), (e: unknown) => e instanceof InputError && /server\.port/.test(e.message));
  });
});

describe('recipes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bake-settings-'));
    await mkdir(join(dir, 'recipes'));
  });
  after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

  const recipe = (chat: string, embed = '') => `image: { name: acme/fleet, version: 1.0.0 }
${FLEET_MODELS}targets:
  chat:
    models: [chat]
    server:
      kind: llama-server
${chat}
  embed:
    models: [embed]
    server: { kind: llama-server${embed} }
`;

  test('settings become the CMD (before args), an embedding model\'s server gets --embedding, inspect shows it', async () => {
    await writeFile(join(dir, 'recipes', 'fleet.yaml'), recipe('      settings: { ctx-size: 8192, ubatch-size: 128, flash-attn: on, mlock: true }\n      args: [--metrics]'));
    const r = await loadRecipe('fleet', dir);
    const chat = r.targets.find((t) => t.name === 'chat')!;
    assert.deepEqual(chat.server.settings, { 'ctx-size': 8192, 'ubatch-size': 128, 'flash-attn': 'on', mlock: true });
    assert.deepEqual(runtimeImage(chat)!.cmd, ['--ctx-size', '8192', '--ubatch-size', '128', '--flash-attn', 'on', '--load-mode', 'mmap+mlock', '--metrics']);
    assert.deepEqual(serverArgs(chat.server, { 'ubatch-size': 64 }).slice(0, 4), ['--ctx-size', '8192', '--ubatch-size', '64'], 'a sweep point overrides one setting');
    const embed = r.targets.find((t) => t.name === 'embed')!;
    assert.deepEqual(embed.server.settings, { embedding: true });
    assert.deepEqual(runtimeImage(embed)!.cmd, ['--embedding']);
    const shown = await bake(['-C', dir, '--json', 'inspect', 'fleet']);
    assert.equal(shown.code, 0, shown.stderr);
    const value = JSON.parse(shown.stdout);
    const cmdOf = (t: string) => (value.images as { target: string; cmd: string[] }[]).find((i) => i.target === t)!.cmd;
    assert.deepEqual(cmdOf('chat'), runtimeImage(chat)!.cmd);
    assert.deepEqual(cmdOf('embed'), ['--embedding']);
    assert.deepEqual(value.targets[0].server.settings, chat.server.settings);
  });

  test('a flag the server does not know is a recipe error naming the file, line and key (exit 2), before any build', async () => {
    await writeFile(join(dir, 'recipes', 'typo.yaml'), recipe('      settings:\n        ctx-size: 8192\n        ubatch-szie: 128'));
    await assert.rejects(loadRecipe('typo', dir), (e: unknown) => e instanceof InputError && e.field === 'targets.chat.server.settings.ubatch-szie' && /ubatch-size/.test(e.message));
    const built = await bake(['-C', dir, 'build', 'typo', '--dockerfile-only']);
    assert.equal(built.code, 2, built.stderr);
    assert.match(built.stderr, /typo\.yaml:17:9/);
    assert.match(built.stderr, /llama-server has no flag --ubatch-szie \(did you mean --ubatch-size\?\)/);
    await writeFile(join(dir, 'recipes', 'argtypo.yaml'), recipe('      args: [--ctx-size, "4096", --flash-atn, on]'));
    await assert.rejects(loadRecipe('argtypo', dir), (e: unknown) => e instanceof InputError && e.field === 'targets.chat.server.args[2]');
    await writeFile(join(dir, 'recipes', 'onnx.yaml'), recipe('      settings: { ctx-size: 1 }').replace('kind: llama-server\n', 'kind: none\n').replace(/  chat:\n    models: \[chat\]\n/, '  chat:\n'));
    await assert.rejects(loadRecipe('onnx', dir), (e: unknown) => e instanceof InputError && /this target runs none, which takes no run settings/.test(e.message));
  });
});
