// Shared set-up for the hub tests: a real model repo, a fresh cache folder, a config pointing at the
// loopback Hub, and a recipe model entry.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HubConfig } from '../../src/hub/config.js';
import { hubConfigFromEnv } from '../../src/hub/config.js';
import type { ModelSpec } from '../../src/recipe/types.js';
import { filesFromDir, type FileSource } from './hub-server.js';
import { sharedModels } from './cli.js';

export const STORIES_HF = join(sharedModels(), 'stories260K', 'hf');
/** From /work/shared/models/README.md. */
export const STORIES_SAFETENSORS_SHA256 = '54e3eb9fe3f0874894e5502fb799b0c38f92ae5a2dd336b541fd16184d02f47b';
export const TOKEN = 'hf_testReaderToken0001';
export const OTHER_TOKEN = 'hf_testOtherToken00002';

export function storiesFiles(): Promise<Record<string, FileSource>> {
  return filesFromDir(STORIES_HF);
}

/** Deterministic pseudo-random bytes (xorshift), so generated repos are equal between runs. */
export function generatedBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export async function tempDir(t: { after: (fn: () => Promise<void>) => void }, prefix = 'bake-hub-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export function hubConfig(url: string, cacheDir: string, overrides: Partial<HubConfig> = {}): HubConfig {
  // HF_TOKEN_PATH to nowhere: a developer's saved login token must not leak into the tests.
  return hubConfigFromEnv({ HF_TOKEN_PATH: '/nonexistent/token' }, { endpoint: url, cacheDir, retryBaseMs: 20, timeoutMs: 5_000, ...overrides });
}

export function model(overrides: Partial<ModelSpec> = {}): ModelSpec {
  return {
    id: 'tiny',
    repo: 'org/tiny',
    revision: 'main',
    files: ['*.json', '*.safetensors', 'tokenizer.model'],
    allow_pickle: [],
    quantize: { format: 'none' },
    verify: {},
    ...overrides,
  };
}
