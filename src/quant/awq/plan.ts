// Which linears AWQ quantizes and at which group size: the stated rule for shapes that do not fit.
//
// Both layouts pack 8 four-bit values into an int32 along the output features (AutoAWQ's qweight and
// qzeros, compressed-tensors' zero points), so out-features must be a multiple of 8; and groups run along
// the input features, so in-features must be a multiple of the group size. vLLM fuses q/k/v into
// qkv_proj and gate/up into gate_up_proj and needs every part of a fused layer in one precision, so
// those go together. The rule, per unit (q+k+v, o, gate+up, down of each layer):
//   - out-features not a multiple of 8: the unit stays fp16 and is listed (modules_to_not_convert / ignore);
//   - shape_rule `smaller-group` (default): the unit takes the largest of group_size, group_size/2, ...
//     (not below 32) that divides its in-features, and the model uses the smallest group any quantized
//     unit took (the AutoAWQ config has one group size); a unit no such group divides stays fp16, listed;
//   - shape_rule `fp16`: the group stays group_size and a unit it does not divide stays fp16, listed.
// With `fp16_fallback: false` a unit that would stay fp16 is an error instead, and a model where no unit
// can be quantized is always one (an AWQ checkpoint of fp16 layers is not what the recipe asked for).
import { InputError } from '../../util/errors.js';
import type { LlamaConfig } from '../../model/llama/config.js';
import { linearShape, type LinearName } from '../../model/llama/weights.js';
import { PACK } from './pack.js';

export type ShapeRule = 'smaller-group' | 'fp16';
export const MIN_GROUP = 32;

export interface PlanOptions {
  groupSize: number;
  shapeRule: ShapeRule;
  fp16Fallback: boolean;
  /** For messages: the recipe field the options came from. */
  field?: string;
  model?: string;
}

export interface PlannedUnit {
  layer: number;
  linears: LinearName[];
  quantize: boolean;
  /** Why the unit stays fp16. */
  reason?: string;
}

export interface AwqPlan {
  /** The group size every quantized linear uses. */
  groupSize: number;
  requestedGroupSize: number;
  units: PlannedUnit[];
  /** HF module names (model.layers.N.mlp.up_proj) left in fp16, with the reason. */
  kept: { module: string; reason: string }[];
  /** What the rule changed, in words (shown in the report). */
  notes: string[];
}

export const UNITS: readonly (readonly LinearName[])[] = [
  ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'],
  ['self_attn.o_proj'],
  ['mlp.gate_proj', 'mlp.up_proj'],
  ['mlp.down_proj'],
];

export function moduleName(layer: number, linear: LinearName): string {
  return `model.layers.${layer}.${linear}`;
}

function groupCandidates(g: number): number[] {
  const out: number[] = [];
  for (let x = g; x >= MIN_GROUP && Number.isInteger(x); x /= 2) out.push(x);
  return out.length ? out : [g];
}

export function planAwq(c: LlamaConfig, opts: PlanOptions): AwqPlan {
  const g = opts.groupSize;
  const candidates = opts.shapeRule === 'smaller-group' ? groupCandidates(g) : [g];
  const units: (PlannedUnit & { group?: number })[] = [];
  for (let l = 0; l < c.nLayer; l++) {
    for (const linears of UNITS) {
      const shapes = linears.map((n) => linearShape(c, n));
      const badOut = shapes.find(([out]) => out % PACK !== 0);
      if (badOut) {
        units.push({ layer: l, linears: [...linears], quantize: false, reason: `out-features ${badOut[0]} are not a multiple of ${PACK} (4-bit values are packed ${PACK} to an int32)` });
        continue;
      }
      const group = candidates.find((x) => shapes.every(([, inF]) => inF % x === 0));
      if (group === undefined) {
        const inF = shapes.find(([, i]) => candidates.every((x) => i % x !== 0))![1];
        units.push({ layer: l, linears: [...linears], quantize: false, reason: `in-features ${inF} are not a multiple of ${candidates.length > 1 ? `any group size in {${candidates.join(', ')}}` : `group_size ${g}`}` });
        continue;
      }
      units.push({ layer: l, linears: [...linears], quantize: true, group });
    }
  }
  const quantized = units.filter((u) => u.quantize);
  const kept = units.filter((u) => !u.quantize).flatMap((u) => u.linears.map((n) => ({ module: moduleName(u.layer, n), reason: u.reason! })));
  const field = opts.field ?? 'quantize';
  if (!quantized.length) {
    throw new InputError(`${opts.model ? `model ${opts.model}: ` : ''}no linear layer of this ${c.hfArchitecture} can be quantized to 4 bits in groups of ${g}: ${kept[0]?.module}: ${kept[0]?.reason}`, {
      field: `${field}.group_size`, expected: `in-features divisible by the group size and out-features by ${PACK}`,
      hint: 'AWQ needs linears whose shapes fit its packing; ship this model another way (gguf, onnx) or pick a group size that divides its in-features',
    });
  }
  if (kept.length && !opts.fp16Fallback) {
    const shown = kept.slice(0, 6).map((k) => `${k.module}: ${k.reason}`).join('; ');
    throw new InputError(`${opts.model ? `model ${opts.model}: ` : ''}${kept.length} linear layer(s) cannot be quantized and fp16_fallback is false: ${shown}${kept.length > 6 ? ` and ${kept.length - 6} more` : ''}`, {
      field: `${field}.fp16_fallback`, expected: 'shapes every quantized layer can take',
      hint: 'set fp16_fallback: true to ship those layers in fp16 (listed in modules_to_not_convert / ignore), or change group_size',
    });
  }
  const groupSize = Math.min(...quantized.map((u) => u.group!));
  const notes: string[] = [];
  if (groupSize !== g) {
    const why = quantized.find((u) => u.group === groupSize)!;
    const [, inF] = linearShape(c, why.linears[0]!);
    notes.push(`group_size ${g} requested; ${groupSize} used because ${moduleName(why.layer, why.linears[0]!)} has ${inF} in-features (shape_rule smaller-group)`);
  }
  if (kept.length) notes.push(`${kept.length} of ${units.flatMap((u) => u.linears).length} linears stay fp16 (listed in the checkpoint's modules_to_not_convert / ignore)`);
  return { groupSize, requestedGroupSize: g, units: units.map(({ group: _g, ...u }) => u), kept, notes };
}

/** Is this linear of this layer quantized under the plan? */
export function isQuantized(plan: AwqPlan, layer: number, linear: LinearName): boolean {
  return plan.units.some((u) => u.layer === layer && u.quantize && u.linears.includes(linear));
}
