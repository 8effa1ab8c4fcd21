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
# The runtime app is one file (esbuild bundle; onnxruntime-node stays a real package because it loads
# a native binding); only the linux-x64 binding of onnxruntime is kept for the cpu images.
RUN ln -s /opt/bake/bin/bake.js /usr/local/bin/bake \
 && mkdir -p /opt/bake-runtime/app /opt/bake-runtime/onnxruntime/node_modules \
 && node_modules/esbuild/bin/esbuild src/runtime/main.ts --bundle --platform=node --format=esm --target=node20 \
      --external:onnxruntime-node --log-level=warning --outfile=/opt/bake-runtime/app/bake-runtime.mjs \
      "--banner:js=import { createRequire as __bakeRequire } from 'node:module'; const require = __bakeRequire(import.meta.url);" \
 && cp -a node_modules/onnxruntime-node node_modules/onnxruntime-common /opt/bake-runtime/onnxruntime/node_modules/ \
 && rm -rf /opt/bake-runtime/onnxruntime/node_modules/onnxruntime-node/script \
 && node -e "require('/opt/bake-runtime/onnxruntime/node_modules/onnxruntime-node')" \
 && node --check /opt/bake-runtime/app/bake-runtime.mjs
ENV BAKE_STORE=/cache/store HF_HOME=/cache/hf
WORKDIR /work
