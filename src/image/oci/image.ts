// Building image values (scratch, append) and turning one into its config and manifest bytes.
import { sha256Bytes } from '../../util/digest.js';
import { InputError } from '../../util/errors.js';
import { canonicalJson } from '../../util/json.js';
import { Annotation, MediaType, type Descriptor, type HistoryEntry, type ImageConfig, type ImageValue, type Layer, type OciManifest } from './types.js';

export function scratchImage(opts: { os?: string; architecture?: string } = {}): ImageValue {
  return {
    config: {
      architecture: opts.architecture ?? 'amd64',
      os: opts.os ?? 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [] },
      history: [],
    },
    layers: [],
    annotations: {},
  };
}

export interface AppendOptions {
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  env?: string[];
  cmd?: string[];
  /** Replaces the base's entrypoint (a base's ENTRYPOINT would otherwise run the new CMD). */
  entrypoint?: string[];
  workdir?: string;
  /** Ports the image serves on (`EXPOSE`), e.g. 8080 (TCP). */
  exposedPorts?: number[];
  /** Docker's HEALTHCHECK (seconds here; nanoseconds in the config). */
  healthcheck?: { test: string[]; interval: number; timeout: number; startPeriod: number; retries: number };
  /** RFC 3339 time for config.created, history and the created annotation (from SOURCE_DATE_EPOCH). */
  created?: string;
  /** One `created_by` text per appended layer. */
  history?: string[];
}

/** A new image: `base` plus `layers` on top, with config and annotations merged. `base` is untouched. */
export function appendLayers(base: ImageValue, layers: Layer[], opts: AppendOptions = {}): ImageValue {
  if (opts.history && opts.history.length !== layers.length) {
    throw new InputError(`appendLayers: got ${opts.history.length} history entries for ${layers.length} layers`, {
      field: 'history',
      expected: 'one history text per appended layer',
    });
  }
  for (const layer of layers) checkLayer(layer);
  const prev = base.config;
  const inner = { ...(prev.config ?? {}) };
  if (opts.env) inner.Env = mergeEnv(inner.Env ?? [], opts.env);
  if (opts.entrypoint) inner.Entrypoint = [...opts.entrypoint];
  // An empty CMD is none at all (as Docker records `CMD []`); the base's would otherwise stay.
  if (opts.cmd?.length) inner.Cmd = [...opts.cmd];
  else if (opts.cmd) delete inner.Cmd;
  if (opts.exposedPorts?.length) inner.ExposedPorts = { ...(inner.ExposedPorts ?? {}), ...Object.fromEntries(opts.exposedPorts.map((p) => [`${p}/tcp`, {}])) };
  if (opts.healthcheck) {
    const ns = (s: number) => s * 1e9;
    const h = opts.healthcheck;
    inner.Healthcheck = { Test: [...h.test], Interval: ns(h.interval), Timeout: ns(h.timeout), StartPeriod: ns(h.startPeriod), Retries: h.retries };
  }
  if (opts.workdir) inner.WorkingDir = opts.workdir;
  if (opts.labels) inner.Labels = { ...(inner.Labels ?? {}), ...opts.labels };

  const added: HistoryEntry[] = layers.map((_, i) => ({
    ...(opts.created ? { created: opts.created } : {}),
    created_by: opts.history?.[i] ?? 'bake',
  }));
  const config: ImageConfig = {
    ...prev,
    ...(opts.created ? { created: opts.created } : {}),
    config: inner,
    rootfs: { type: 'layers', diff_ids: [...prev.rootfs.diff_ids, ...layers.map((l) => l.diffId)] },
    history: [...(prev.history ?? []), ...added],
  };
  // The base's own manifest annotations describe the base, not the new image: start afresh.
  const annotations: Record<string, string> = {};
  const baseRef = base.source ?? base.base;
  if (baseRef) {
    annotations[Annotation.baseName] = baseRef.name;
    annotations[Annotation.baseDigest] = baseRef.digest;
  }
  if (opts.created) annotations[Annotation.created] = opts.created;
  Object.assign(annotations, opts.annotations ?? {});
  return { config, layers: [...base.layers, ...layers], annotations, base: baseRef };
}

function mergeEnv(old: string[], add: string[]): string[] {
  const out = new Map<string, string>();
  for (const e of [...old, ...add]) out.set(e.split('=')[0]!, e);
  return [...out.values()];
}

function checkLayer(layer: Layer): void {
  for (const [name, d] of [['digest', layer.digest], ['diffId', layer.diffId]] as const) {
    if (!isDigest(d)) throw new InputError(`layer ${name} is not a sha256 digest: ${String(d)}`, { field: name, expected: 'sha256:<64 hex>' });
  }
  if (!Number.isSafeInteger(layer.size) || layer.size < 0) throw new InputError(`layer ${layer.digest} has a bad size: ${layer.size}`, { field: 'size' });
}

export function isDigest(s: unknown): s is string {
  return typeof s === 'string' && /^sha256:[0-9a-f]{64}$/.test(s);
}

/** RFC 3339 UTC time for a SOURCE_DATE_EPOCH value (seconds). */
export function epochToRfc3339(epoch: number): string {
  if (!Number.isSafeInteger(epoch) || epoch < 0) {
    throw new InputError(`SOURCE_DATE_EPOCH must be a whole number of seconds >= 0, got ${epoch}`, { field: 'SOURCE_DATE_EPOCH' });
  }
  return new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

export interface SerializedImage {
  config: { bytes: Uint8Array; descriptor: Descriptor };
  manifest: { bytes: Uint8Array; descriptor: Descriptor };
  layers: Descriptor[];
}

/** The config and manifest bytes of an image and their digests; canonical JSON so equal values give equal digests. */
export function serializeImage(img: ImageValue): SerializedImage {
  if (img.config.rootfs.diff_ids.length !== img.layers.length) {
    throw new InputError(`image config lists ${img.config.rootfs.diff_ids.length} diff_ids but the image has ${img.layers.length} layers`, { field: 'config.rootfs.diff_ids' });
  }
  const configBytes = img.raw?.config ?? Buffer.from(canonicalJson(img.config));
  const configDesc: Descriptor = { mediaType: MediaType.ociConfig, digest: `sha256:${sha256Bytes(configBytes)}`, size: configBytes.length };
  const layers: Descriptor[] = img.layers.map((l) => ({
    mediaType: ociLayerType(l.mediaType),
    digest: l.digest,
    size: l.size,
    ...(l.annotations && Object.keys(l.annotations).length ? { annotations: l.annotations } : {}),
  }));
  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: configDesc,
    layers,
    ...(Object.keys(img.annotations).length ? { annotations: img.annotations } : {}),
  };
  const manifestBytes = img.raw?.manifest ?? Buffer.from(canonicalJson(manifest));
  const manifestType = img.raw?.manifestMediaType ?? MediaType.ociManifest;
  return {
    config: { bytes: configBytes, descriptor: configDesc },
    manifest: {
      bytes: manifestBytes,
      descriptor: { mediaType: manifestType, digest: `sha256:${sha256Bytes(manifestBytes)}`, size: manifestBytes.length },
    },
    layers,
  };
}

/** Docker v2s2 layer types carry the same bytes as their OCI twins; an OCI manifest names the OCI one. */
export function ociLayerType(mediaType: string): string {
  switch (mediaType) {
    case MediaType.dockerLayerGzip:
      return MediaType.ociLayerGzip;
    case MediaType.dockerLayerTar:
      return MediaType.ociLayerTar;
    case MediaType.ociLayerTar:
    case MediaType.ociLayerGzip:
    case MediaType.ociLayerZstd:
      return mediaType;
    default:
      throw new InputError(`unsupported layer media type ${mediaType}`, {
        field: 'layers[].mediaType',
        expected: `${MediaType.ociLayerTar} or ${MediaType.ociLayerGzip} (or their Docker v2s2 equivalents)`,
        hint: 'foreign or non-distributable layers cannot be re-published; pick a base image without them',
      });
  }
}

/** Returns a layer with extra annotations (e.g. bake's model provenance); the blob is unchanged. */
export function withLayerAnnotations(layer: Layer, annotations: Record<string, string>): Layer {
  return { ...layer, annotations: { ...(layer.annotations ?? {}), ...annotations } };
}
