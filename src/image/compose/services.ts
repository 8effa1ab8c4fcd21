// What each kind of server adds to its compose service: a target contributes its service definition
// here (llama-server: a GPU reservation for a CUDA build; vLLM: its GPU, with room for the host settings
// it needs). Everything kinds share (image, command, health check, restart, limits) is index.ts's.
import type { ServerKind, TargetSpec } from '../../recipe/types.js';
import { composeServiceFragment } from '../../runtime/vllm.js';

/** The subset of the Compose Specification's service that bake writes. */
export interface ComposeService {
  image: string;
  command?: string[];
  restart?: string;
  environment?: Record<string, string>;
  ports?: string[];
  mem_limit?: string;
  cpus?: number;
  ipc?: string;
  shm_size?: string;
  ulimits?: Record<string, number | { soft: number; hard: number }>;
  healthcheck?: { test: string[]; interval: string; timeout: string; start_period: string; retries: number };
  deploy?: { resources: { reservations: { devices: { driver: string; count: number | 'all'; capabilities: string[] }[] } } };
  labels?: Record<string, string>;
}

export type ServiceContribution = (target: TargetSpec) => Partial<ComposeService>;

/** An NVIDIA GPU reservation (compose's deploy.resources.reservations.devices). */
export function gpuReservation(target: TargetSpec): Partial<ComposeService> {
  if (target.server.device !== 'cuda') return {};
  return { deploy: { resources: { reservations: { devices: [{ driver: 'nvidia', count: target.deploy.gpus ?? 'all', capabilities: ['gpu'] }] } } } };
}

/** A llama-server that locks its model in RAM (mlock) needs the memlock limit lifted, or mlock fails. */
function llamaServer(target: TargetSpec): Partial<ComposeService> {
  const s = target.server.settings;
  const mlock = s.mlock === true || String(s['load-mode'] ?? '').includes('mlock');
  return { ...gpuReservation(target), ...(mlock ? { ulimits: { memlock: { soft: -1, hard: -1 } } } : {}) };
}

/**
 * vLLM needs from the host what no image can carry (ipc=host for its shared memory, memlock and stack
 * ulimits for NCCL and CUDA, its GPUs: the target's host settings, src/runtime/vllm.ts).
 */
function vllm(target: TargetSpec): Partial<ComposeService> {
  const host = target.server.host;
  if (!host) return gpuReservation(target);
  return composeServiceFragment(host) as Partial<ComposeService>;
}

/** One entry per server kind. */
export const SERVICE_CONTRIBUTIONS: Record<ServerKind, ServiceContribution> = {
  onnx: gpuReservation,
  'llama-server': llamaServer,
  vllm,
  none: () => ({}),
};
