// Daemonless images: an image is a value (base + layers); an OCI layout, a docker-archive and a
// registry are three writers of it.
export { Annotation, MediaType } from './types.js';
export type { BaseRef, Compression, Descriptor, HistoryEntry, ImageConfig, ImageValue, Layer, LayerOrigin, OciIndex, OciManifest } from './types.js';
export { appendLayers, epochToRfc3339, scratchImage, serializeImage, withLayerAnnotations, type AppendOptions, type SerializedImage } from './image.js';
export { DEFAULT_COMPRESSION, dirLayer, type DirLayerOptions } from './layer.js';
export { readOciLayout, writeOciLayout } from './layout.js';
export { writeDockerArchive } from './docker-archive.js';
export { expandTags, imageAnnotations, isValidTag, modelLayerAnnotations, releaseTags } from './tags.js';
export type { Platform } from './parse.js';
export type { RegistryOptions } from '../registry/client.js';
export { listTags, pullImage } from '../registry/pull.js';
export { pushImage, type PushEvent, type PushOptions, type PushResult } from '../registry/push.js';
export { formatRef, parseRef, type ImageRef } from '../registry/ref.js';
