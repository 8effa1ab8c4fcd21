// The runtime module a serving app imports: find, check (or fetch) and hand over baked models.
export { loadModels, checkFiles, DEFAULT_MODELS_ROOT } from './load.js';
export type { LoadOptions, LoadedModel } from './load.js';
export { parseManifest, readManifest, MANIFEST_FILE } from './manifest.js';
export type { ModelManifest, ManifestFile } from './manifest.js';
export { fetchUnbundled, modelLayerOf, unbundledManifest, DEFAULT_MODELS_CACHE, MODELS_CACHE_ENV } from './unbundled.js';
export { serve, modelFiles } from './serve.js';
export type { ServeOptions, Serving, RuntimeServer } from './serve.js';
