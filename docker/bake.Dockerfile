# The bake builder image: node + bake (sources run through tsx, production and test node_modules
# without other platforms' prebuilt binaries). Recipe Dockerfiles (docker/<recipe>/Dockerfile) use it
# as their models stage, and copy the runtime app and onnxruntime out of it into the runtime stages.
# Build from the project root (its ignore file is docker/bake.Dockerfile.dockerignore):
#   DOCKER_BUILDKIT=1 docker build -f docker/bake.Dockerfile --network none -t bake-builder:local .
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
WORKDIR /opt/bake
COPY package.json package-lock.json .npmrc ./
COPY node_modules/ node_modules/
COPY bin/ bin/
COPY schema/ schema/
COPY src/ src/
COPY --chmod=755 docker/bake/bake-materialize docker/bake/bake-runtime /usr/local/bin/
# The runtime app (bundle, onnxruntime-node for linux-x64, node) laid out as in the images' /opt/bake-runtime;
# the recipe Dockerfiles' runtime stages COPY the parts their target needs (src/runtime/contract.ts).
RUN ln -s /opt/bake/bin/bake.js /usr/local/bin/bake \
 && bake runtime-app --out /opt/bake-runtime \
 && node -e "require('/opt/bake-runtime/app/node_modules/onnxruntime-node')" \
 && node --check /opt/bake-runtime/app/bake-runtime.mjs
ENV BAKE_STORE=/cache/store HF_HOME=/cache/hf
WORKDIR /work
