// vLLM's OpenAI server as a target runs it: the recipe's run settings (server.settings) become `vllm
// serve` flags, and the host settings the container needs (shared memory through ipc=host, unlimited
// memlock, a 64 MiB stack, GPUs reserved) are data a compose file and `bake inspect` show, since a
// Docker image cannot carry them.
import type { HostSettings, VllmSettings } from '../recipe/types.js';

/** The run settings a vllm target takes (server.settings). */
export const VLLM_SETTINGS = ['gpu_memory_utilization', 'max_model_len', 'tensor_parallel_size', 'dtype', 'served_model_name'] as const;

/** `vllm serve` flags for the recipe's settings, in a fixed order (served-model-name is added at start, per model). */
export function vllmArgs(s: VllmSettings | undefined): string[] {
  if (!s) return [];
  const out: string[] = [];
  if (s.gpu_memory_utilization !== undefined) out.push('--gpu-memory-utilization', String(s.gpu_memory_utilization));
  if (s.max_model_len !== undefined) out.push('--max-model-len', String(s.max_model_len));
  if (s.tensor_parallel_size !== undefined) out.push('--tensor-parallel-size', String(s.tensor_parallel_size));
  if (s.dtype !== undefined) out.push('--dtype', s.dtype);
  if (s.served_model_name !== undefined) out.push('--served-model-name', s.served_model_name);
  return out;
}

/** What vLLM needs from the host (vLLM's docs run it with --ipc=host; NCCL and CUDA want memlock and stack). */
export function vllmHostSettings(s: VllmSettings | undefined): HostSettings {
  return {
    ipc: 'host',
    ulimits: { memlock: -1, stack: 67108864 },
    gpus: s?.tensor_parallel_size ?? 'all',
  };
}

/** The target's service entry for a compose file (docker compose's service keys). */
export function composeServiceFragment(host: HostSettings): Record<string, unknown> {
  return {
    ipc: host.ipc,
    ulimits: { memlock: { soft: host.ulimits.memlock, hard: host.ulimits.memlock }, stack: host.ulimits.stack },
    deploy: { resources: { reservations: { devices: [{ driver: 'nvidia', count: host.gpus, capabilities: ['gpu'] }] } } },
  };
}

/** `docker run` flags for the same settings (README, inspect). */
export function dockerRunFlags(host: HostSettings): string[] {
  return [`--ipc=${host.ipc}`, `--ulimit`, `memlock=${host.ulimits.memlock}`, `--ulimit`, `stack=${host.ulimits.stack}`, `--gpus`, host.gpus === 'all' ? 'all' : String(host.gpus)];
}
