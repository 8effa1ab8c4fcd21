// Defensive parsing of manifests, indexes and configs that came from disk or a registry.
import { InputError } from '../../util/errors.js';
import { isDigest } from './image.js';
import { MediaType, type Descriptor, type ImageConfig, type OciIndex, type OciManifest } from './types.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const MAX_ENTRIES = 10_000;

function fail(where: string, field: string, expected: string): never {
  throw new InputError(`${where}: ${field} is malformed`, { file: where, field, expected });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown, where: string, field: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v) || Object.values(v).some((x) => typeof x !== 'string')) fail(where, field, 'an object of strings');
  return v as Record<string, string>;
}

export function parseDescriptor(v: unknown, where: string, field: string): Descriptor {
  if (!isObject(v)) fail(where, field, 'a descriptor object');
  if (typeof v.mediaType !== 'string') fail(where, `${field}.mediaType`, 'a media type string');
  if (!isDigest(v.digest)) fail(where, `${field}.digest`, 'sha256:<64 hex> (other algorithms are not supported)');
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) fail(where, `${field}.size`, 'a whole number of bytes');
  const d: Descriptor = { mediaType: v.mediaType, digest: v.digest, size: v.size };
  const ann = stringMap(v.annotations, where, `${field}.annotations`);
  if (ann) d.annotations = ann;
  if (typeof v.artifactType === 'string') d.artifactType = v.artifactType;
  if (isObject(v.platform) && typeof v.platform.os === 'string' && typeof v.platform.architecture === 'string') {
    d.platform = { os: v.platform.os, architecture: v.platform.architecture };
    if (typeof v.platform.variant === 'string') d.platform.variant = v.platform.variant;
  }
  return d;
}

function descriptors(v: unknown, where: string, field: string): Descriptor[] {
  if (!Array.isArray(v) || v.length > MAX_ENTRIES) fail(where, field, `an array of at most ${MAX_ENTRIES} descriptors`);
  return v.map((d, i) => parseDescriptor(d, where, `${field}[${i}]`));
}

export function parseIndex(v: unknown, where: string): OciIndex {
  if (!isObject(v) || v.schemaVersion !== 2) fail(where, 'schemaVersion', '2');
  const index: OciIndex = { schemaVersion: 2, manifests: descriptors(v.manifests, where, 'manifests') };
  if (typeof v.mediaType === 'string') index.mediaType = v.mediaType;
  const ann = stringMap(v.annotations, where, 'annotations');
  if (ann) index.annotations = ann;
  return index;
}

export function parseManifest(v: unknown, where: string): OciManifest {
  if (!isObject(v) || v.schemaVersion !== 2) fail(where, 'schemaVersion', '2 (schema 1 manifests are not supported)');
  const mediaType = typeof v.mediaType === 'string' ? v.mediaType : MediaType.ociManifest;
  if (mediaType !== MediaType.ociManifest && mediaType !== MediaType.dockerManifest) {
    fail(where, 'mediaType', `${MediaType.ociManifest} or ${MediaType.dockerManifest}`);
  }
  const config = parseDescriptor(v.config, where, 'config');
  const m: OciManifest = { schemaVersion: 2, mediaType, config, layers: descriptors(v.layers, where, 'layers') };
  const ann = stringMap(v.annotations, where, 'annotations');
  if (ann) m.annotations = ann;
  return m;
}

export function parseConfig(v: unknown, where: string): ImageConfig {
  if (!isObject(v)) fail(where, '(config)', 'a JSON object');
  if (typeof v.os !== 'string') fail(where, 'os', 'a string such as "linux"');
  if (typeof v.architecture !== 'string') fail(where, 'architecture', 'a string such as "amd64"');
  const rootfs = v.rootfs;
  if (!isObject(rootfs) || rootfs.type !== 'layers' || !Array.isArray(rootfs.diff_ids) || rootfs.diff_ids.length > MAX_ENTRIES || !rootfs.diff_ids.every(isDigest)) {
    fail(where, 'rootfs', '{"type":"layers","diff_ids":["sha256:..."]}');
  }
  if (v.history !== undefined && v.history !== null && (!Array.isArray(v.history) || !v.history.every(isObject))) fail(where, 'history', 'an array of objects');
  if (v.config !== undefined && v.config !== null && !isObject(v.config)) fail(where, 'config', 'an object');
  return v as unknown as ImageConfig;
}

export function pickPlatform(index: OciIndex, platform: Platform, where: string): Descriptor {
  const found = index.manifests.find(
    (d) => d.platform?.os === platform.os && d.platform.architecture === platform.architecture && (!platform.variant || d.platform.variant === platform.variant),
  );
  if (!found) {
    const have = index.manifests.map((d) => (d.platform ? `${d.platform.os}/${d.platform.architecture}` : '?')).join(', ');
    throw new InputError(`${where}: no image for ${platform.os}/${platform.architecture}`, { file: where, expected: `one of: ${have}` });
  }
  return found;
}
