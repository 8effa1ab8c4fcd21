// `--sweep key=v1,v2` as setting points: the cartesian product of every swept key's values, each point
// checked against the llama-server flags (src/runtime/llama-server/settings.ts) before anything starts.
import type { ServerSettingValue, ServerSpec } from '../recipe/types.js';
import { serverArgs } from '../runtime/contract.js';
import { InputError } from '../util/errors.js';

export type SettingPoint = Record<string, ServerSettingValue>;

function scalar(v: string): ServerSettingValue {
  if (v === 'true') return true;
  if (v === 'false') return false;
  return /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
}

/** `ubatch-size=64,128,256` (repeatable) -> { 'ubatch-size': [64, 128, 256] }. */
export function parseSweep(specs: readonly string[]): Record<string, ServerSettingValue[]> {
  const out: Record<string, ServerSettingValue[]> = {};
  for (const s of specs) {
    const m = /^([a-z][a-z0-9+-]*)=(.+)$/.exec(s);
    if (!m) throw new InputError(`--sweep ${s}: expected <setting>=<value>,<value>...`, { field: '--sweep', expected: 'e.g. ubatch-size=64,128,256' });
    if (out[m[1]!]) throw new InputError(`--sweep ${m[1]} is given twice`, { field: '--sweep', hint: 'list every value in one --sweep' });
    out[m[1]!] = [...new Set(m[2]!.split(',').map((x) => x.trim()).filter(Boolean))].map(scalar);
  }
  return out;
}

/** The points to measure (one, with no sweep), each checked: a bad key or value is an error naming it. */
export function sweepPoints(server: ServerSpec, sweep: Record<string, ServerSettingValue[]>): SettingPoint[] {
  let points: SettingPoint[] = [{}];
  for (const [key, values] of Object.entries(sweep)) points = points.flatMap((p) => values.map((v) => ({ ...p, [key]: v })));
  for (const p of points) serverArgs(server, p, (key) => ({ field: `--sweep ${key}` }));
  return points;
}
