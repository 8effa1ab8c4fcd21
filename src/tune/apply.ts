// `bake bench --apply`: the winning settings written into the recipe file, changing only those fields.
// yaml's Document API finds each field and the exact source range of its value; the edit splices just
// that range (or adds one line, or one `, key: value` in a flow mapping), so comments, quoting, flow
// sequences and every other line stay byte for byte.
import { readFile } from 'node:fs/promises';
import { isMap, isPair, isScalar, parseDocument, stringify, type Pair, type YAMLMap } from 'yaml';
import { InputError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { SettingPoint } from './sweep.js';

interface Edit {
  at: number;
  end: number;
  text: string;
}

function scalarText(v: unknown): string {
  return stringify(v).trimEnd();
}

function column(text: string, offset: number): number {
  return offset - (text.lastIndexOf('\n', offset - 1) + 1);
}

/** Where a new `key: value` goes in `map`, and how it is written. */
function insertion(text: string, map: YAMLMap, entries: string[]): Edit {
  const [start, valueEnd] = map.range!;
  const last = map.items[map.items.length - 1] as Pair | undefined;
  if (map.flow) {
    const close = text.lastIndexOf('}', valueEnd);
    const after = last ? (last.value as { range?: [number, number, number] } | null)?.range?.[1] ?? close : close;
    return { at: after, end: after, text: `${last ? ', ' : ' '}${entries.join(', ')}${last ? '' : ' '}` };
  }
  const firstKey = (map.items[0] as Pair<{ range?: [number, number, number] }> | undefined)?.key?.range?.[0] ?? start;
  const indent = ' '.repeat(column(text, firstKey));
  const lastEnd = last ? ((last.value as { range?: [number, number, number] } | null)?.range?.[1] ?? valueEnd) : valueEnd;
  const eol = text.indexOf('\n', lastEnd);
  const at = eol < 0 ? text.length : eol;
  return { at, end: at, text: entries.map((e) => `\n${indent}${e}`).join('') };
}

/** The recipe text with targets.<target>.server.settings.<key> set for each key of `settings`. */
export function applySettingsText(text: string, target: string, settings: SettingPoint, file = 'recipe'): string {
  const doc = parseDocument(text, { keepSourceTokens: true });
  if (doc.errors.length) throw new InputError(`${file}: ${doc.errors[0]!.message}`, { file });
  const server = doc.getIn(['targets', target, 'server'], true);
  if (!isMap(server)) {
    throw new InputError(`${file} has no targets.${target}.server to write settings into`, { file, field: `targets.${target}.server`, hint: `add server: { kind: llama-server } to target ${target}` });
  }
  const edits: Edit[] = [];
  const map = server.get('settings', true);
  if (!isMap(map)) {
    const inner = Object.entries(settings).map(([k, v]) => `${k}: ${scalarText(v)}`);
    edits.push(insertion(text, server, [`settings: { ${inner.join(', ')} }`]));
  } else {
    const added: string[] = [];
    for (const [key, value] of Object.entries(settings)) {
      const pair = map.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key) as Pair | undefined;
      const node = pair?.value as { range?: [number, number, number] } | null | undefined;
      if (pair && node?.range) edits.push({ at: node.range[0], end: node.range[1], text: scalarText(value) });
      else added.push(`${key}: ${scalarText(value)}`);
    }
    if (added.length) edits.push(insertion(text, map, added));
  }
  let out = text;
  for (const e of edits.sort((a, b) => b.at - a.at)) out = out.slice(0, e.at) + e.text + out.slice(e.end);
  // The edit must mean what it says: the file reads back with exactly these values.
  const check = parseDocument(out);
  for (const [key, value] of Object.entries(settings)) {
    if (check.errors.length || check.getIn(['targets', target, 'server', 'settings', key]) !== value) {
      throw new InputError(`${file}: could not write targets.${target}.server.settings.${key} without reformatting the file`, { file, field: `targets.${target}.server.settings.${key}`, hint: `set ${key}: ${scalarText(value)} by hand` });
    }
  }
  return out;
}

/** Writes `settings` into the recipe file (atomically); returns the previous text (to restore). */
export async function applySettings(file: string, target: string, settings: SettingPoint): Promise<string> {
  const before = await readFile(file, 'utf8');
  await writeFileAtomic(file, applySettingsText(before, target, settings, file));
  return before;
}
