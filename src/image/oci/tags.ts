// Tags for release pipelines and the annotations that say where an image came from.
import { InputError } from '../../util/errors.js';
import { epochToRfc3339 } from './image.js';
import { Annotation } from './types.js';

const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/**
 * A recipe's tag templates with {version}, {target} and {models} (12 hex of the locked models' digest,
 * so the same weights always get the same tag whatever the version says) filled in, each checked.
 * Semver build metadata's `+` is not allowed in tags; it becomes `_` as Helm does. Templates that use
 * {models} are left out when no digest is given (a Dockerfile written before the lock).
 */
export function expandTags(templates: readonly string[], vars: { version: string; target: string; modelsDigest?: string }): string[] {
  let models: string | undefined;
  if (vars.modelsDigest !== undefined) {
    const hex = vars.modelsDigest.replace(/^sha256:/, '');
    if (!/^[0-9a-f]{12,64}$/.test(hex)) {
      throw new InputError(`models digest "${vars.modelsDigest}" is not a sha256`, { field: 'modelsDigest', expected: 'sha256:<hex> or <hex>' });
    }
    models = hex.slice(0, 12);
  }
  const out = new Set<string>();
  for (const t of templates) {
    if (t.includes('{models}') && models === undefined) continue;
    const tag = t.replace(/\{version\}/g, vars.version.replace(/\+/g, '_')).replace(/\{target\}/g, vars.target).replace(/\{models\}/g, models ?? '');
    if (!TAG.test(tag)) {
      throw new InputError(`"${tag}" (from the tag template "${t}") is not a valid image tag`, { field: 'image.tags', expected: 'letters, digits, _ . - (at most 128, not starting with . or -)' });
    }
    out.add(tag);
  }
  return [...out];
}

/** `<version>-<target>`, `<version>` and `models-<12 hex>`: the release tags of one image. */
export function releaseTags(opts: { version: string; target: string; modelsDigest: string }): string[] {
  return expandTags(['{version}-{target}', '{version}', 'models-{models}'], opts);
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/** Provenance annotations for the image manifest (image-spec annotations.md); created from SOURCE_DATE_EPOCH. */
export function imageAnnotations(opts: { epoch: number; revision?: string; source?: string; version?: string; title?: string }): Record<string, string> {
  const out: Record<string, string> = { [Annotation.created]: epochToRfc3339(opts.epoch) };
  if (opts.revision) out[Annotation.revision] = opts.revision;
  if (opts.source) out[Annotation.source] = opts.source;
  if (opts.version) out[Annotation.version] = opts.version;
  if (opts.title) out[Annotation.title] = opts.title;
  return out;
}

/** Per-layer provenance of one model: where its weights came from, pinned. */
export function modelLayerAnnotations(opts: { id: string; repo: string; commit: string; format?: string; files?: number }): Record<string, string> {
  const out: Record<string, string> = {
    'dev.bake.model.id': opts.id,
    'dev.bake.model.source': opts.repo,
    'dev.bake.model.commit': opts.commit,
    [Annotation.title]: opts.id,
  };
  if (opts.format) out['dev.bake.model.format'] = opts.format;
  if (opts.files !== undefined) out['dev.bake.model.files'] = String(opts.files);
  return out;
}
