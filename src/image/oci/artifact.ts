// OCI 1.1 artifact manifests (image-spec manifest.md "Guidelines for Artifact Usage"): an image manifest
// with an artifactType, the empty config and the files as layers, pointing at the manifest it describes
// through `subject`. Canonical JSON, so the same files and subject always give the same digest.
import { sha256Bytes } from '../../util/digest.js';
import { canonicalJson } from '../../util/json.js';
import { Annotation, MediaType, type Descriptor } from './types.js';

/** The empty config blob `{}` and its descriptor (with the bytes inlined as `data`, as the spec suggests). */
export const EMPTY_CONFIG = {
  bytes: Buffer.from('{}'),
  descriptor: { mediaType: MediaType.ociEmpty, digest: `sha256:${sha256Bytes('{}')}`, size: 2, data: 'e30=' },
} as const;

export interface ArtifactFile {
  mediaType: string;
  /** File name, kept in the layer's org.opencontainers.image.title annotation (what ORAS pulls it as). */
  title: string;
  bytes: Uint8Array;
}

export interface ArtifactSpec {
  artifactType: string;
  subject: Descriptor;
  files: ArtifactFile[];
  annotations?: Record<string, string>;
}

export interface ArtifactManifest {
  artifactType: string;
  subject: Descriptor;
  annotations: Record<string, string>;
  /** Every blob it names: the empty config, then the files. */
  blobs: { digest: string; size: number; bytes: Uint8Array }[];
  bytes: Uint8Array;
  descriptor: Descriptor & { artifactType: string };
}

export function artifactManifest(spec: ArtifactSpec): ArtifactManifest {
  const layers = spec.files.map((f) => ({
    mediaType: f.mediaType,
    digest: `sha256:${sha256Bytes(f.bytes)}`,
    size: f.bytes.length,
    annotations: { [Annotation.title]: f.title },
  }));
  const subject = { mediaType: spec.subject.mediaType, digest: spec.subject.digest, size: spec.subject.size };
  const annotations = { ...(spec.annotations ?? {}) };
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: spec.artifactType,
    config: EMPTY_CONFIG.descriptor,
    layers,
    subject,
    ...(Object.keys(annotations).length ? { annotations } : {}),
  };
  const bytes = Buffer.from(canonicalJson(manifest));
  return {
    artifactType: spec.artifactType,
    subject,
    annotations,
    blobs: [{ digest: EMPTY_CONFIG.descriptor.digest, size: 2, bytes: EMPTY_CONFIG.bytes }, ...spec.files.map((f, i) => ({ digest: layers[i]!.digest, size: layers[i]!.size, bytes: f.bytes }))],
    bytes,
    descriptor: { mediaType: MediaType.ociManifest, digest: `sha256:${sha256Bytes(bytes)}`, size: bytes.length, artifactType: spec.artifactType, ...(Object.keys(annotations).length ? { annotations } : {}) },
  };
}
