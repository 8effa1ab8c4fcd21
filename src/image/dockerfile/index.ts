// Dockerfile, docker-bake.hcl and build-context generation for recipes.
export { renderDockerfile, baseArgName, localPathsFor, DEFAULT_BAKE_IMAGE } from './generate.js';
export type { DockerfileInputs } from './generate.js';
export { renderBakeHcl, imageTags, targetName } from './bakehcl.js';
export type { BakeHclEntry } from './bakehcl.js';
export { writeBuildFiles, contextPathsFor, loadProjectRecipes } from './write.js';
export type { BuildFiles } from './write.js';
