import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { test } from 'node:test';
import { hubConfigFromEnv, redactToken } from '../../src/hub/config.js';
import { InputError } from '../../src/util/errors.js';

test('defaults follow huggingface_hub: huggingface.co, ~/.cache/huggingface/hub, online', () => {
  const cfg = hubConfigFromEnv({ HF_TOKEN_PATH: '/nonexistent/token' });
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

test('without HF_TOKEN, the token saved by `huggingface-cli login` is used (HF_TOKEN_PATH, else $HF_HOME/token)', () => {
  const home = mkdtempSync(join(tmpdir(), 'bake-hf-home-'));
  writeFileSync(join(home, 'token'), 'hf_savedLoginToken0001\n');
  assert.equal(hubConfigFromEnv({ HF_HOME: home }).token, 'hf_savedLoginToken0001');
  assert.equal(hubConfigFromEnv({ HF_HOME: home, HF_TOKEN: 'hf_fromTheEnvironment1' }).token, 'hf_fromTheEnvironment1');
  writeFileSync(join(home, 'other'), 'not-a-token');
  assert.throws(
    () => hubConfigFromEnv({ HF_HOME: home, HF_TOKEN_PATH: join(home, 'other') }),
    (e: unknown) => e instanceof InputError && e.file === join(home, 'other') && !e.message.includes('not-a-token'),
  );
  assert.equal(hubConfigFromEnv({ HF_TOKEN_PATH: join(home, 'missing') }).token, undefined);
});

test('HF_HUB_DOWNLOAD_TIMEOUT (seconds) sets the idle timeout', () => {
  assert.equal(hubConfigFromEnv({ HF_HUB_DOWNLOAD_TIMEOUT: '12' }).timeoutMs, 12_000);
  assert.equal(hubConfigFromEnv({ HF_HUB_DOWNLOAD_TIMEOUT: 'x' }).timeoutMs, undefined);
});
