// general.name of a converted GGUF, chosen as convert_hf_to_gguf.py chooses it (gguf-py's Metadata
// heuristics): the model card's `name` or `model_name`, else config.json's `_name_or_path` when it is a
// Hub id rather than a file path, else the model folder's name. A Hub id or folder name becomes a title:
// "TinyLlama-1.1B-Chat-v1.0" -> "TinyLlama 1.1B Chat v1.0".
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { ModelSpec } from '../recipe/types.js';
import type { HfConfig } from './architectures/index.js';

/** How much of README.md is read looking for its front matter. */
const CARD_BYTES = 64 * 1024;

export async function ggufModelName(srcDir: string, config: HfConfig, folderName: string): Promise<string> {
  const card = await modelCard(srcDir);
  for (const key of ['name', 'model_name']) {
    const v = card[key];
    if (typeof v === 'string' && v.trim()) return v;
  }
  const nameOrPath = config._name_or_path;
  // Only a Hub id (`org/name` or `name`): a longer path is where the model happened to be saved.
  if (typeof nameOrPath === 'string' && nameOrPath.split('/').length <= 2) {
    const title = idToTitle(fullName(nameOrPath));
    if (title) return title;
  }
  return idToTitle(fullName(folderName)) || folderName;
}

/** The model part of a Hub id: `org/name` -> `name`; an id with spaces is a name already. */
function fullName(id: string): string {
  if (id.includes(' ')) return id;
  const slash = id.indexOf('/');
  return slash < 0 ? id : id.slice(slash + 1);
}

/**
 * gguf-py's Metadata.id_to_title: dashes become spaces, and an all-lowercase word is title-cased unless it
 * is a version (v1, v0.1) or starts with a digit ("hermes-2-pro-llama-3-8b-DPO" -> "Hermes 2 Pro Llama 3 8b DPO").
 */
export function idToTitle(id: string): string {
  return id.trim().replaceAll('-', ' ').split(/\s+/).filter(Boolean)
    .map((w) => (isLower(w) && !/^(v\d+(?:\.\d+)*|\d.*)$/.test(w) ? titleCase(w) : w))
    .join(' ');
}

const isCased = (ch: string): boolean => ch.toLowerCase() !== ch.toUpperCase();

/** Python's str.islower: at least one cased character, and none of them upper case. */
function isLower(w: string): boolean {
  let cased = false;
  for (const ch of w) {
    if (!isCased(ch)) continue;
    if (ch !== ch.toLowerCase()) return false;
    cased = true;
  }
  return cased;
}

/** Python's str.title: a cased character after an uncased one is upper case, the others lower case. */
function titleCase(w: string): string {
  let out = '';
  let prevCased = false;
  for (const ch of w) {
    const cased = isCased(ch);
    out += cased ? (prevCased ? ch.toLowerCase() : ch.toUpperCase()) : ch;
    prevCased = cased;
  }
  return out;
}

/** README.md's YAML front matter (the Hub's model card metadata); {} when absent or unreadable. */
async function modelCard(srcDir: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const fh = await open(join(srcDir, 'README.md'), 'r');
    try {
      const buf = Buffer.alloc(CARD_BYTES);
      const { bytesRead } = await fh.read(buf, 0, CARD_BYTES, 0);
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return {};
  }
  const m = /^\uFEFF?---[ \t]*\r?\n([^]*?)\r?\n---[ \t]*(\r?\n|$)/.exec(text);
  if (!m) return {};
  try {
    const data = parse(m[1]!, { maxAliasCount: 100 }) as unknown;
    return data !== null && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, unknown>) : {};
  } catch {
    return {}; // a model card that is not valid YAML names nothing; the conversion does not depend on it
  }
}

/**
 * The folder name a user converting this model with convert_hf_to_gguf.py would have: the Hub repo's name
 * (`org/name` -> `name`) or the local folder's last path segment (also for `npm:<package>/<dir>`). It
 * comes from the recipe, as the lock records it, never from where bake keeps its copy; when the path ends
 * in `.` or `..` (a name that depends on the checkout), the model id stands in.
 */
export function modelFolderName(model: Pick<ModelSpec, 'id' | 'repo' | 'path'>): string {
  const from = model.repo ?? model.path?.replace(/^npm:/, '') ?? '';
  const last = from.split(/[/\\]/).filter(Boolean).pop();
  return last === undefined || last === '.' || last === '..' ? model.id : last;
}
