// The models of the fleet recipes: a GGUF chat model and a GGUF embedding model.
export const FLEET_MODELS = `models:
  - id: chat
    repo: Qwen/Qwen2.5-0.5B-Instruct
    quantize: { format: gguf, type: Q4_K_M }
  - id: embed
    repo: nomic-ai/nomic-embed-text-v1.5
    task: feature-extraction
    quantize: { format: gguf, type: Q8_0 }
`;

// A fleet recipe for the compose tests: a chat target (3 replicas, limits, host ports), an embedding
// target (2 replicas), a CUDA build of llama-server with a GPU, and a models-only target.
export const FLEET = `image: { name: registry.example.com/ml/fleet, version: 2.1.0 }
${FLEET_MODELS}targets:
  chat:
    models: [chat]
    server: { kind: llama-server, settings: { ctx-size: 4096, ubatch-size: 128, flash-attn: on } }
    deploy: { replicas: 3, memory: 2g, cpus: 1.5, port: 8080 }
  embed:
    models: [embed]
    server: { kind: llama-server, port: 8081 }
    deploy: { replicas: 2, restart: always, port: 9000 }
  gpu:
    models: [chat]
    server: { kind: llama-server, device: cuda, settings: { n-gpu-layers: all } }
    deploy: { gpus: 1 }
  files:
    base: scratch
`;
