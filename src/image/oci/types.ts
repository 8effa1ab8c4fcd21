// The image value: a config, an ordered list of layers and manifest annotations. Writers (OCI layout,
// docker-archive, registry) are functions over it; nothing here touches a daemon.

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  /** The empty config of an OCI 1.1 artifact manifest: the two bytes `{}`. */
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar',
} as const;

/** Standard annotation keys (opencontainers image-spec annotations.md). */
export const Annotation = {
  created: 'org.opencontainers.image.created',
  revision: 'org.opencontainers.image.revision',
  source: 'org.opencontainers.image.source',
  version: 'org.opencontainers.image.version',
  title: 'org.opencontainers.image.title',
  baseName: 'org.opencontainers.image.base.name',
  baseDigest: 'org.opencontainers.image.base.digest',
  refName: 'org.opencontainers.image.ref.name',
} as const;

export interface Descriptor {
  mediaType: string;
  /** `sha256:<hex>`. */
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string; variant?: string };
  /** OCI 1.1: what kind of artifact a referrer is (descriptors in a referrers list). */
  artifactType?: string;
}

/** Where a layer's blob already lives in a registry: lets a push mount it instead of uploading. */
export interface LayerOrigin {
  host: string;
  repository: string;
}

export interface Layer {
  mediaType: string;
  /** Digest of the blob as stored (compressed when the media type says so). */
  digest: string;
  size: number;
  /** Digest of the uncompressed tar (config.rootfs.diff_ids). Equal to `digest` for plain tars. */
  diffId: string;
  annotations?: Record<string, string>;
  /** The blob's bytes, exactly `size` of them hashing to `digest`; writers verify while copying. */
  open(): NodeJS.ReadableStream | Promise<NodeJS.ReadableStream>;
  /** A file holding the blob that this process hashed itself: writers may copy it without re-hashing. */
  verifiedFile?: string;
  /**
   * Writes the blob to a new file `path` in one pass and returns the digest and size of what it wrote
   * (writers compare them with the descriptor); faster than copying `open()` when the blob is made on the fly.
   */
  writeFile?(path: string, onBytes?: (n: number) => void): Promise<{ digest: string; size: number }>;
  origin?: LayerOrigin;
}

/** The OCI image config (image-spec config.md); unknown fields from a base are kept as they are. */
export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  created?: string;
  author?: string;
  config?: {
    Env?: string[];
    Cmd?: string[];
    Entrypoint?: string[];
    WorkingDir?: string;
    Labels?: Record<string, string>;
    User?: string;
    ExposedPorts?: Record<string, object>;
    [k: string]: unknown;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
  [k: string]: unknown;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
  author?: string;
}

/** The image the value was built on, for the base.name / base.digest annotations. */
export interface BaseRef {
  /** A full reference such as `127.0.0.1:5000/debian:bookworm` or `oci:/path/layout:tag`. */
  name: string;
  /** Manifest digest of the base. */
  digest: string;
}

export interface ImageValue {
  config: ImageConfig;
  layers: readonly Layer[];
  /** Manifest annotations. */
  annotations: Record<string, string>;
  /** The image this one was built on (for base.name / base.digest). */
  base?: BaseRef;
  /** Where this exact value was read from (a layout or a registry); appendLayers makes it the base. */
  source?: BaseRef;
  /**
   * The exact config and manifest bytes a base came with, kept while the value is unmodified so
   * re-writing a read or pulled image gives the same digests. appendLayers drops them.
   */
  raw?: { config: Uint8Array; manifest: Uint8Array; manifestMediaType: string };
}

export interface OciManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface OciIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export type Compression = 'none' | 'gzip';
