// The Docker engine side of `bake build`: dockerode client, BuildKit progress, context packing, builds.
export { connectEngine, engineAddress, pingEngine, buildImage, inspectImage, hasImage, tagImage, pushImage, BuildFailedError } from './engine.js';
export type { EngineBuildOptions, ImageFacts } from './engine.js';
export { decodeTrace, decodeStreamLine } from './progress.js';
export type { BuildEvent, BuildStep } from './progress.js';
export { packContext, listContext, contextFilter } from './context.js';
export type { ContextSpec } from './context.js';
export { buildTarget, buildRecipe, ensureBakeImage } from './build.js';
export type { BuildTargetOptions, BuildRecipeOptions, BuiltTarget } from './build.js';
