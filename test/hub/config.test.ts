import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { hubConfigFromEnv, redactToken } from '../../src/hub/config.js';
import { InputError } from '../../src/util/errors.js';

test('defaults follow huggingface_hub: huggingface.co, ~/.cache/huggingface/hub, online', () => {
  const cfg = hubConfigFromEnv({});
  assert.equal(cfg.endpoint, 'https://huggingface.co');
  assert.equal(cfg.cacheDir, join(homedir(), '.cache', 'huggingface', 'hub'));
  assert.equal(cfg.offline, false);
  assert.equal(cfg.token, undefined);
  assert.ok(cfg.concurrency >= 1 && cfg.retries >= 1);
});

test('cache folder precedence: HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > HF_HOME/hub > XDG_CACHE_HOME', () => {
  const all = { HF_HUB_CACHE: '/a', HUGGINGFACE_HUB_CACHE: '/b', HF_HOME: '/c', XDG_CACHE_HOME: '/d' };
  assert.equal(hubConfigFromEnv(all).cacheDir, '/a');
  assert.equal(hubConfigFromEnv({ ...all, HF_HUB_CACHE: '' }).cacheDir, '/b');
  assert.equal(hubConfigFromEnv({ HF_HOME: '/c', XDG_CACHE_HOME: '/d' }).cacheDir, '/c/hub');
  assert.equal(hubConfigFromEnv({ XDG_CACHE_HOME: '/d' }).cacheDir, '/d/huggingface/hub');
  assert.equal(hubConfigFromEnv(all, { cacheDir: '/e' }).cacheDir, '/e');
});

test('HF_ENDPOINT is normalized and checked', () => {
  assert.equal(hubConfigFromEnv({ HF_ENDPOINT: 'http://127.0.0.1:8080/' }).endpoint, 'http://127.0.0.1:8080');
  assert.equal(hubConfigFromEnv({ HF_ENDPOINT: 'https://mirror.example/hf/' }).endpoint, 'https://mirror.example/hf');
  assert.throws(() => hubConfigFromEnv({ HF_ENDPOINT: 'not a url' }), (e: unknown) => e instanceof InputError && e.field === 'HF_ENDPOINT');
  assert.throws(() => hubConfigFromEnv({ HF_ENDPOINT: 'ftp://x' }), InputError);
  assert.throws(() => hubConfigFromEnv({ HF_ENDPOINT: 'https://user:pw@x' }), InputError);
});

test('HF_HUB_OFFLINE accepts the words Python accepts', () => {
  for (const v of ['1', 'ON', 'yes', 'True']) assert.equal(hubConfigFromEnv({ HF_HUB_OFFLINE: v }).offline, true, v);
  for (const v of ['0', '', 'off', 'no']) assert.equal(hubConfigFromEnv({ HF_HUB_OFFLINE: v }).offline, false, v);
});

test('HF_TOKEN is validated without ever echoing it', () => {
  assert.equal(hubConfigFromEnv({ HF_TOKEN: 'hf_abcdefghijKLMNOP1234' }).token, 'hf_abcdefghijKLMNOP1234');
  const secret = 'ghp_SuperSecretGithubToken123';
  assert.throws(
    () => hubConfigFromEnv({ HF_TOKEN: secret }),
    (e: unknown) => e instanceof InputError && e.field === 'HF_TOKEN' && !JSON.stringify(e.toJSON()).includes(secret) && !e.message.includes(secret),
  );
  assert.throws(() => hubConfigFromEnv({ HF_TOKEN: 'hf_has space' }), InputError);
});

test('redactToken hides the configured token and anything token-shaped', () => {
  const cfg = hubConfigFromEnv({ HF_TOKEN: 'hf_abcdefghijKLMNOP1234' });
  const out = redactToken('Authorization: Bearer hf_abcdefghijKLMNOP1234; other hf_zzzzzzzzzzzz9', cfg);
  assert.equal(out, 'Authorization: Bearer hf_***; other hf_***');
  assert.ok(!JSON.stringify(cfg).includes('undefined'));
});
