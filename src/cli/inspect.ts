// `bake inspect`: a recipe, a lock entry, a store artifact or an OCI layout, as JSON; or a pushed image
// in a registry: its gate summary (manifest annotations) and the report and provenance referring to it.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { lockfilePath, readLockfile } from '../lock/lockfile.js';
import { loadRecipe } from '../recipe/load.js';
import { runtimeImage } from '../runtime/contract.js';
import { composeServiceFragment, dockerRunFlags } from '../runtime/vllm.js';
import { defaultStoreRoot, Store } from '../store/store.js';
import { InputError } from '../util/errors.js';
import type { RunInput } from './types.js';

export async function inspect(input: RunInput): Promise<{ value: unknown; text: string }> {
  const what = input.args[0]!;
  const root = resolve(input.globals.project);
  // bake prints 12 hex of artifact digests and step keys: any unambiguous prefix names one.
  if (/^(sha256:)?[0-9a-fA-F]{12,64}$/.test(what)) {
    const value = await new Store(input.globals.store ?? defaultStoreRoot()).describe(what);
    return { value, text: JSON.stringify(value, null, 2) };
  }
  if (what.startsWith('oci:')) {
    const dir = resolve(root, what.slice(4));
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    return { value: index, text: JSON.stringify(index, null, 2) };
  }
  if (what.includes('/') && !what.endsWith('.yaml')) {
    const lock = await readLockfile(lockfilePath(root));
    // host[:port]/name[:tag]: a registry reference (lock keys are <recipe>/<model>, with no host).
    if (!lock.models[what] && looksLikeImageRef(what)) return inspectImage(what);
    const e = lock.models[what];
    if (!e) throw new InputError(`models.lock has no entry ${what}`, { expected: Object.keys(lock.models).join(', ') || '(the lock is empty: run `bake lock <recipe>`)' });
    return { value: e, text: JSON.stringify(e, null, 2) };
  }
  const recipe = await loadRecipe(what, root);
  // What each target's image runs, and what the host must grant it (vLLM: ipc, ulimits, GPUs), which
  // no image can carry: as compose service keys and docker run flags.
  const images = recipe.targets.map((t) => {
    const rt = runtimeImage(t);
    const host = t.server.host;
    return {
      target: t.name, base: t.base, server: t.server.kind,
      ...(rt ? { entrypoint: rt.entrypoint, cmd: rt.cmd, exposed_port: rt.exposedPort, healthcheck: rt.healthcheck } : {}),
      ...(host ? { host, compose_service: composeServiceFragment(host), docker_run_flags: dockerRunFlags(host) } : {}),
    };
  });
  const value = { ...recipe, images };
  return { value, text: JSON.stringify(value, null, 2) };
}

function looksLikeImageRef(what: string): boolean {
  const host = what.replace(/^docker:\/\//, '').split('/')[0]!;
  return host.includes('.') || host.includes(':') || host === 'localhost';
}

async function inspectImage(ref: string): Promise<{ value: unknown; text: string }> {
  const { inspectRemoteImage } = await import('../image/registry/referrers.js');
  const { GATE_ANNOTATION } = await import('../report/model.js');
  const img = await inspectRemoteImage(ref);
  const gates = Object.entries(img.annotations).filter(([k]) => k === GATE_ANNOTATION || k.startsWith(`${GATE_ANNOTATION}.`)).sort(([a], [b]) => (a < b ? -1 : 1));
  const lines = [`${img.reference}`, `digest: ${img.digest}`];
  if (gates.length) {
    lines.push('gate summary:');
    for (const [k, v] of gates) lines.push(`  ${k === GATE_ANNOTATION ? 'image' : k.slice(GATE_ANNOTATION.length + 1)}: ${v}`);
  } else lines.push('gate summary: none (the image was not built by bake, or before bake recorded gates)');
  lines.push(`artifacts referring to it (${img.referrers.via === 'referrers-api' ? 'Referrers API' : `referrers tag ${img.digest.replace(':', '-')}`}): ${img.referrers.artifacts.length}`);
  for (const a of img.referrers.artifacts) {
    lines.push(`  ${a.artifactType ?? '(no artifactType)'} ${a.digest}`);
    for (const f of a.files) lines.push(`    ${f.title ?? '(untitled)'} ${f.mediaType} ${f.size} B ${f.digest}`);
  }
  return { value: { ...img, gates: Object.fromEntries(gates) }, text: lines.join('\n') };
}
