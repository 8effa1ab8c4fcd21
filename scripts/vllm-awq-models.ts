// Generates the stand-in models of recipes/vllm-awq.yaml into .bake/vllm-awq-models/ (deterministic: seeded
// weights, stable writers): a Qwen2 checkpoint bake quantizes to AWQ, and a small AutoAWQ GEMM checkpoint
// standing in for a published AWQ upload (GLM-4.5-Air-AWQ-4bit in production).
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeVllmAwqModels } from '../test/support/awq-fixtures.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, '.bake', 'vllm-awq-models');
await writeVllmAwqModels(out);
process.stdout.write(`vllm-awq stand-in models written to ${out}\n`);
