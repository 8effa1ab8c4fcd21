// Tags for release pipelines and the annotations that say where an image came from.
import { InputError } from '../../util/errors.js';
import { epochToRfc3339 } from './image.js';
import { Annotation } from './types.js';

const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/**
 * `<version>-<target>`, `<version>` and `models-<12 hex>` (from the digest of the locked models, so
 * the same weights always get the same tag whatever the version says). Semver build metadata's `+`
 * is not allowed in tags; it becomes `_` as Helm does.
 */
export function releaseTags(opts: { version: string; target: string; modelsDigest: string }): string[] {
  const version = opts.version.replace(/\+/g, '_');
  const hex = opts.modelsDigest.replace(/^sha256:/, '');
  if (!/^[0-9a-f]{12,64}$/.test(hex)) {
    throw new InputError(`models digest "${opts.modelsDigest}" is not a sha256`, { field: 'modelsDigest', expected: 'sha256:<hex> or <hex>' });
  }
  const tags = [`${version}-${opts.target}`, version, `models-${hex.slice(0, 12)}`];
  for (const [field, tag] of [['version/target', tags[0]!], ['version', tags[1]!]] as const) {
    if (!TAG.test(tag)) {
      throw new InputError(`"${tag}" is not a valid image tag`, { field, expected: 'letters, digits, _ . - (at most 128, not starting with . or -)' });
    }
  }
  return tags;
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
