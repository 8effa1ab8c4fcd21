// Reads recipes/<name>.yaml: YAML with source positions, JSON Schema validation, defaults.
// Every error names file:line:col, the field and what is allowed, so a user can fix it without docs.
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { InputError } from '../util/errors.js';
import { normalizeTargets, type RawTarget } from './targets.js';
import type { EmbeddingSpec, ModelSpec, QuantSpec, Recipe, RerankSpec, TargetName } from './types.js';

const schemaPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'schema', 'recipe.schema.json');

let validator: ReturnType<Ajv['compile']> | undefined;
let schemaCache: Record<string, unknown> | undefined;

export async function recipeSchema(): Promise<Record<string, unknown>> {
  schemaCache ??= JSON.parse(await readFile(schemaPath, 'utf8')) as Record<string, unknown>;
  return schemaCache;
}

async function getValidator(): Promise<ReturnType<Ajv['compile']>> {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, discriminator: true, strict: false, verbose: true });
    validator = ajv.compile(await recipeSchema());
  }
  return validator;
}

/** Finds the recipe file for a name or path: `rag-service` -> recipes/rag-service.yaml. */
export function recipePath(nameOrPath: string, root = process.cwd()): string {
  if (nameOrPath.endsWith('.yaml') || nameOrPath.endsWith('.yml') || nameOrPath.includes('/')) return resolve(root, nameOrPath);
  return resolve(root, 'recipes', `${nameOrPath}.yaml`);
}

export async function loadRecipe(nameOrPath: string, root = process.cwd()): Promise<Recipe> {
  const file = recipePath(nameOrPath, root);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InputError(`recipe not found: ${file}`, {
      file,
      hint: `write recipes/${basename(file)} (see recipes/demo.yaml), or name an existing recipe: \`ls recipes/\``,
      cause: err,
    });
  }
  return parseRecipe(text, file);
}

/** Parses and validates recipe text; `file` is used for names and error locations. */
export async function parseRecipe(text: string, file: string): Promise<Recipe> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const rel = displayPath(file);
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = lineCounter.linePos(e.pos[0]);
    throw new InputError(`invalid YAML: ${e.message.split('\n')[0]}`, { file: rel, line: pos.line, column: pos.col, hint: 'fix the YAML syntax at that position' });
  }
  const data = doc.toJS({ maxAliasCount: 100 }) as unknown;
  const validate = await getValidator();
  if (!validate(data)) {
    const errors = rankErrors(validate.errors ?? []);
    const first = errors[0]!;
    const { path, node, key } = locate(doc.contents as YamlNode | null, first);
    const range = (key ?? node)?.range;
    const pos = range ? lineCounter.linePos(range[0]) : undefined;
    throw new InputError(`${fieldName(path) || '(top level)'}: ${describe(first)}`, {
      file: rel,
      line: pos?.line,
      column: pos?.col,
      field: fieldName(path),
      expected: expectedOf(first),
      hint: `see schema/recipe.schema.json${errors.length > 1 ? ` (${errors.length - 1} more problem${errors.length > 2 ? 's' : ''} after this one)` : ''}`,
    });
  }
  return normalize(data as RawRecipe, file, doc, lineCounter);
}

function displayPath(file: string): string {
  const cwd = process.cwd() + '/';
  return file.startsWith(cwd) ? file.slice(cwd.length) : file;
}

// ---- error ranking and wording -------------------------------------------------------------

/** Ajv reports every branch of a oneOf; show the most specific, most useful error first. */
function rankErrors(errors: ErrorObject[]): ErrorObject[] {
  const score = (e: ErrorObject): number => {
    let s = e.instancePath.split('/').length * 10;
    if (e.keyword === 'additionalProperties') s += 5;
    if (e.keyword === 'oneOf' || e.keyword === 'if' || e.keyword === 'discriminator') s -= 3;
    return s;
  };
  return [...errors].sort((a, b) => score(b) - score(a));
}

function describe(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `unknown key "${String(p.additionalProperty)}"; allowed keys: ${allowedKeys(e).join(', ')}`;
    case 'required':
      return `missing required key "${String(p.missingProperty)}"`;
    case 'enum':
      return `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify(p.allowedValue)}`;
    case 'type':
      return `must be ${String(p.type)}`;
    case 'pattern':
      return `does not match the pattern ${String(p.pattern)}`;
    case 'discriminator':
      return p.error === 'mapping'
        ? `unknown format ${JSON.stringify(p.tagValue)}; allowed: "onnx-int8", "onnx-fp16", "gguf", "none"`
        : `missing "format" (one of "onnx-int8", "onnx-fp16", "gguf", "none")`;
    default:
      return e.message ?? e.keyword;
  }
}

function expectedOf(e: ErrorObject): string | undefined {
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'additionalProperties') return `one of: ${allowedKeys(e).join(', ')}`;
  if (e.keyword === 'enum') return (p.allowedValues as unknown[]).map(String).join(' | ');
  return undefined;
}

function allowedKeys(e: ErrorObject): string[] {
  const props = (e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return props ? Object.keys(props) : [];
}

/** Maps an Ajv error to the YAML node (and key node, for unknown keys) it is about. */
function locate(root: YamlNode | null, e: ErrorObject): { path: (string | number)[]; node?: YamlNode; key?: YamlNode } {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  let node: YamlNode | null | undefined = root;
  let key: YamlNode | undefined;
  for (const seg of path) {
    const next = child(node, seg);
    if (!next) break;
    node = next.value;
    key = next.key;
  }
  const extra = (e.params as Record<string, unknown>).additionalProperty ?? (e.keyword === 'discriminator' ? 'format' : undefined);
  if (typeof extra === 'string') {
    const next = child(node, extra);
    if (next) return { path: [...path, extra], node: next.value ?? undefined, key: next.key };
  }
  return { path, node: node ?? undefined, key: e.keyword === 'required' ? undefined : key };
}

function child(node: YamlNode | null | undefined, seg: string | number): { key?: YamlNode; value: YamlNode | null } | undefined {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (isPair(pair) && isScalar(pair.key) && String(pair.key.value) === String(seg)) {
        return { key: pair.key as YamlNode, value: (pair.value as YamlNode) ?? null };
      }
    }
  } else if (isSeq(node) && typeof seg === 'number') {
    const item = node.items[seg];
    if (item !== undefined) return { value: item as YamlNode };
  }
  return undefined;
}

export function fieldName(path: (string | number)[]): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : seg;
  return out;
}

// ---- defaults and cross-field rules --------------------------------------------------------

interface RawModel {
  id: string;
  repo?: string;
  path?: string;
  revision?: string;
  files?: string[];
  allow_pickle?: string[];
  task?: string;
  embedding?: Partial<EmbeddingSpec>;
  rerank?: Partial<RerankSpec>;
  targets?: TargetName[];
  quantize: QuantSpec;
  verify?: ModelSpec['verify'];
}
interface RawRecipe {
  description?: string;
  image: { name: string; version?: string; tags?: string[]; labels?: Record<string, string> };
  models: RawModel[];
  targets: Record<string, RawTarget>;
}

function normalize(raw: RawRecipe, file: string, doc: ReturnType<typeof parseDocument>, lc: LineCounter): Recipe {
  const rel = displayPath(file);
  const at = (path: (string | number)[]) => {
    const { node, key } = locate(doc.contents as YamlNode | null, { instancePath: '/' + path.join('/'), params: {}, keyword: 'x' } as unknown as ErrorObject);
    const range = (key ?? node)?.range;
    const pos = range ? lc.linePos(range[0]) : undefined;
    return { file: rel, line: pos?.line, column: pos?.col, field: fieldName(path) };
  };
  const seen = new Map<string, number>();
  const models: ModelSpec[] = raw.models.map((m, i) => {
    if ((m.repo === undefined) === (m.path === undefined)) {
      throw new InputError(`models[${i}] (${m.id}): give exactly one of "repo" (a Hugging Face repo) or "path" (a local folder)`, {
        ...at(['models', i]),
        expected: 'repo: org/name, or path: ./folder',
      });
    }
    if (seen.has(m.id)) {
      throw new InputError(`models[${i}].id: "${m.id}" is already used by models[${seen.get(m.id)}]; ids name folders under /app/models and must be unique`, at(['models', i, 'id']));
    }
    seen.set(m.id, i);
    if (m.embedding && m.rerank) {
      throw new InputError(`models[${i}] (${m.id}): a model is an embedder or a reranker, not both`, { ...at(['models', i, 'rerank']), expected: 'one of embedding: or rerank:' });
    }
    if ((m.embedding || m.rerank) && m.quantize.format !== 'onnx-int8' && m.quantize.format !== 'onnx-fp16' && m.quantize.format !== 'none') {
      throw new InputError(`models[${i}] (${m.id}): ${m.embedding ? 'embedding' : 'rerank'} is for ONNX text models, and quantize.format is ${m.quantize.format}`, { ...at(['models', i, m.embedding ? 'embedding' : 'rerank']), expected: 'quantize.format onnx-int8, onnx-fp16 or none' });
    }
    const prefix = m.embedding?.default_prefix;
    if (prefix !== undefined && !(prefix in (m.embedding?.prefixes ?? {}))) {
      throw new InputError(`models[${i}].embedding.default_prefix: "${prefix}" is not one of its prefixes`, { ...at(['models', i, 'embedding', 'default_prefix']), expected: Object.keys(m.embedding?.prefixes ?? {}).join(', ') || 'a name declared under embedding.prefixes' });
    }
    return {
      id: m.id,
      repo: m.repo,
      path: m.path,
      revision: m.revision ?? (m.path ? 'local' : 'main'),
      files: m.files ?? ['*'],
      allow_pickle: m.allow_pickle ?? [],
      task: m.task,
      ...(m.embedding ? { embedding: { pooling: 'mean', normalize: true, prefixes: {}, max_tokens: 512, ...m.embedding } as EmbeddingSpec } : {}),
      ...(m.rerank ? { rerank: { activation: 'sigmoid', max_tokens: 512, ...m.rerank } as RerankSpec } : {}),
      quantize: m.quantize,
      verify: m.verify ?? {},
      targets: m.targets,
    };
  });
  const targets = normalizeTargets(raw.targets, models, at);
  const name = basename(file, extname(file));
  return {
    name,
    file,
    description: raw.description,
    models,
    targets,
    image: {
      name: raw.image.name,
      version: raw.image.version ?? '0.0.0',
      tags: raw.image.tags ?? ['{version}-{target}', '{version}', 'models-{models}-{target}'],
      labels: raw.image.labels ?? {},
    },
  };
}
