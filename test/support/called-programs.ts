// Finds the programs bake's sources call, so a test can hold them against the one list of host tools
// (scripts/host-tools.sh). TypeScript: string literals given to spawn/execFile/run..., `join(dir, 'x')`
// as the program, and absolute /bin, /sbin paths. Shell (scripts, the Makefile's recipes, .ci/run):
// the command word of every simple command, `command -v` lines, and absolute /bin, /sbin paths outside
// single quotes (single-quoted text here is Dockerfile lines and messages, not host commands).
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

export interface CalledProgram {
  /** As written: a name looked up on PATH, an absolute path, or a relative path inside the repo. */
  program: string;
  /** `file:line` of one call. */
  at: string;
}

const ABS_PROGRAM = String.raw`/(?:usr/)?(?:local/)?s?bin/[A-Za-z0-9._+-]+`;
const SPAWNERS = 'spawn|spawnSync|execFile|execFileSync|exec|execSync|execa|execaSync|run|runTool|tool';

/** Programs a TypeScript/JavaScript source calls or names by absolute path. */
export function programsInScript(text: string): { program: string; index: number }[] {
  const out: { program: string; index: number }[] = [];
  const literal = new RegExp(String.raw`(['"\`])(${ABS_PROGRAM})\1`, 'g');
  for (const m of text.matchAll(literal)) out.push({ program: m[2]!, index: m.index });
  // The called name as the first argument: spawn('x', ...), execFileSync('x'), run(join(bin, 'x'), ...).
  const call = new RegExp(String.raw`(?<![.\w])(?:${SPAWNERS})\(\s*(?:(['"])([A-Za-z0-9._+/-]+)\1\s*[,)]|join\([^()]*?,\s*(['"])([A-Za-z0-9._+-]+)\3\s*\)\s*,)`, 'g');
  for (const m of text.matchAll(call)) out.push({ program: (m[2] ?? m[4])!, index: m.index });
  return out;
}

const SHELL_KEYWORDS = new Set(['if', 'then', 'else', 'elif', 'fi', 'do', 'done', 'while', 'until', 'for', 'in', 'case', 'esac', 'function', '{', '}', '!', '[[', ']]', 'select', 'time']);
// Words after which a command word follows.
const BEFORE_COMMAND = new Set(['if', 'then', 'else', 'elif', 'do', 'while', 'until', '{', '!', 'time']);
const SHELL_BUILTINS = new Set([
  '.', ':', '[', 'alias', 'break', 'builtin', 'cd', 'command', 'continue', 'declare', 'echo', 'eval', 'exec', 'exit', 'export',
  'false', 'getopts', 'hash', 'kill', 'let', 'local', 'mapfile', 'printf', 'pwd', 'read', 'readarray', 'readonly', 'return',
  'set', 'shift', 'source', 'test', 'trap', 'true', 'type', 'typeset', 'ulimit', 'umask', 'unset', 'wait',
]);

/**
 * Command words of a bash script: after a newline, ; & | ( $( ` and the keywords that start a
 * command, skipping assignments, redirections, comments, heredoc bodies, case patterns, functions the
 * script defines and builtins. Words that start with `$` (a command held in a variable) are skipped:
 * the absolute-path scan finds what such variables hold.
 */
export function programsInShell(source: string): { program: string; index: number }[] {
  const out: { program: string; index: number }[] = [];
  const text = blankHeredocs(source);
  const functions = new Set([...text.matchAll(/^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)\s*\{/gm)].map((m) => m[1]!));
  const n = text.length;
  let i = 0;
  let expect = true; // the next word is a command word
  let caseDepth = 0;
  let pattern = false; // inside `case ... in`, reading a pattern up to its `)`
  let pendingIn = -1; // after `case WORD`, waiting for `in` (at this quote depth)
  const quoteStack: string[] = []; // '"' while inside double quotes; '(' for $( ... ) inside them
  while (i < n) {
    const c = text[i]!;
    const inDouble = quoteStack.at(-1) === '"';
    if (inDouble) {
      if (c === '\\') { i += 2; continue; }
      if (c === '"') { quoteStack.pop(); i++; continue; }
      if (c === '$' && text[i + 1] === '(' && text[i + 2] !== '(') { quoteStack.push('('); expect = true; i += 2; continue; }
      if (c === '`') { quoteStack.push('`'); expect = true; i++; continue; }
      i++;
      continue;
    }
    if (c === '#' && (i === 0 || /[\s;&|(]/.test(text[i - 1]!))) { while (i < n && text[i] !== '\n') i++; continue; }
    if (c === "'") { i = skipSingle(text, i); expect = false; continue; }
    if (c === '"') { quoteStack.push('"'); expect = false; i++; continue; }
    if (c === '\\' && text[i + 1] === '\n') { i += 2; continue; }
    if (c === '\n' || c === ';' || c === '&' || c === '|') {
      if (caseDepth > 0 && c === ';' && text[i + 1] === ';') { pattern = true; i += 2; continue; }
      if (c !== '\n' || pendingIn < 0) expect = !pattern;
      i++;
      continue;
    }
    if (c === ')' ) {
      if (pattern) { pattern = false; expect = true; i++; continue; }
      if (quoteStack.at(-1) === '(') quoteStack.pop();
      expect = false;
      i++;
      continue;
    }
    if (c === '`') {
      if (quoteStack.at(-1) === '`') quoteStack.pop();
      else { quoteStack.push('`'); expect = true; }
      i++;
      continue;
    }
    if (c === '$' && text[i + 1] === '(' && text[i + 2] === '(') { i = skipBalanced(text, i + 1); expect = false; continue; }
    if (c === '$' && text[i + 1] === '(') { quoteStack.push('('); expect = true; i += 2; continue; }
    if (c === '$' && text[i + 1] === '{') { i = skipBalanced(text, i + 1, '{', '}'); expect = false; continue; }
    if (c === '(') { if (!pattern) expect = true; i++; continue; }
    if (/\s/.test(c)) { i++; continue; }
    // A word.
    const start = i;
    while (i < n && !/[\s;&|()`'"<>]/.test(text[i]!)) {
      if (text[i] === '$' && (text[i + 1] === '(' || text[i + 1] === '{')) break;
      i++;
    }
    if (i < n && (text[i] === '<' || text[i] === '>')) { // a redirection: skip it and its target
      const op = /^(?:[<>]&(?:\d+|-)|&?>>?|<<?<?)/.exec(text.slice(i))![0];
      i += op.length;
      if (/&(\d+|-)$/.test(op)) continue; // >&2: no target word
      while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
      while (i < n && !/[\s;&|()`<>]/.test(text[i]!)) i = text[i] === "'" ? skipSingle(text, i) : i + 1;
      continue;
    }
    const word = text.slice(start, i);
    if (word === '') { i++; continue; }
    if (pendingIn === quoteStack.length) { if (word === 'in') { pendingIn = -1; pattern = true; } continue; }
    if (word === 'esac') { caseDepth--; pattern = false; expect = false; continue; }
    if (pattern || !expect) continue;
    if (/^[A-Za-z_]\w*(\[[^\]]*\])?\+?=/.test(word)) { // assignment: a command may follow
      if (word.endsWith('=') && text[i] === '(') i = skipBalanced(text, i); // name=(array words)
      continue;
    }
    if (word === 'case') { caseDepth++; pendingIn = quoteStack.length; expect = false; continue; }
    if (word === 'for' || word === 'select') { expect = false; continue; }
    if (SHELL_KEYWORDS.has(word)) { expect = BEFORE_COMMAND.has(word); continue; }
    expect = false;
    if (word.startsWith('$') || SHELL_BUILTINS.has(word) || functions.has(word) || /^[0-9]/.test(word)) continue;
    out.push({ program: word, index: start });
  }
  for (const m of stripSingleQuotedAndComments(text).matchAll(new RegExp(String.raw`(?<![\w./-])(${ABS_PROGRAM})(?![\w./-])`, 'g'))) {
    out.push({ program: m[1]!, index: m.index });
  }
  for (const m of text.matchAll(/command -v ([a-z][a-z0-9._+-]*)/g)) out.push({ program: m[1]!, index: m.index });
  return out;
}

function skipSingle(text: string, i: number): number {
  const end = text.indexOf("'", i + 1);
  return end < 0 ? text.length : end + 1;
}

function skipBalanced(text: string, i: number, open = '(', close = ')'): number {
  let depth = 0;
  for (; i < text.length; i++) {
    if (text[i] === open) depth++;
    else if (text[i] === close && --depth === 0) return i + 1;
  }
  return i;
}

/** Replaces heredoc bodies with blank lines (same offsets), keeping the `<<EOF` line. */
function blankHeredocs(text: string): string {
  const lines = text.split('\n');
  for (let l = 0; l < lines.length; l++) {
    const m = /<<-?\s*['"]?([A-Za-z_]\w*)['"]?/.exec(lines[l]!.replace(/'[^']*'/g, ''));
    if (!m) continue;
    for (l++; l < lines.length; l++) {
      const end = lines[l]!.trim() === m[1];
      lines[l] = ' '.repeat(lines[l]!.length);
      if (end) break;
    }
  }
  return lines.join('\n');
}

function stripSingleQuotedAndComments(text: string): string {
  return text.replace(/'[^'\n]*'|(^|\s)#[^\n]*/g, (s) => s.replace(/[^\n]/g, ' '));
}

/** A Makefile's recipe lines as shell: `$$` -> `$`, `$(VAR)` replaced by the Makefile's own definition. */
export function makefileRecipes(makefile: string): string {
  const vars = new Map<string, string>();
  for (const m of makefile.matchAll(/^(?:export\s+)?([A-Za-z_][\w]*)\s*[:?+]?=\s*(.*)$/gm)) vars.set(m[1]!, m[2]!);
  const expand = (s: string, depth = 0): string =>
    depth > 5 ? s : s.replace(/\$\(([A-Za-z_]\w*)\)/g, (all, name: string) => (vars.has(name) ? expand(vars.get(name)!, depth + 1) : all));
  const recipe = makefile.split('\n').map((line) => (line.startsWith('\t') ? expand(line.slice(1).replace(/^[@-]+/, '')).replaceAll('$$', '$') : ''));
  return recipe.join('\n');
}

const SOURCE_DIRS = ['test', 'src', 'scripts', 'bench'];

/** Every program called by the repository's tests, sources, scripts, benches, Makefile and CI entry point. */
export async function calledPrograms(root: string, skip: string[] = []): Promise<CalledProgram[]> {
  const found: CalledProgram[] = [];
  const add = (file: string, text: string, hits: { program: string; index: number }[]) => {
    for (const h of hits) found.push({ program: h.program, at: `${relative(root, file)}:${text.slice(0, h.index).split('\n').length}` });
  };
  for (const dir of SOURCE_DIRS) {
    for (const name of await readdir(join(root, dir), { recursive: true })) {
      const file = join(root, dir, name);
      if (name.split('/').includes('node_modules') || skip.includes(relative(root, file))) continue;
      if (/\.(ts|js|mjs|cjs)$/.test(name)) { const text = await readFile(file, 'utf8'); add(file, text, programsInScript(text)); }
      else if (/\.sh$/.test(name)) { const text = await readFile(file, 'utf8'); add(file, text, programsInShell(text)); }
    }
  }
  const makefile = join(root, 'Makefile');
  const mk = await readFile(makefile, 'utf8');
  const recipes = makefileRecipes(mk);
  add(makefile, recipes, programsInShell(recipes));
  const ci = join(root, '.ci', 'run');
  const ciText = await readFile(ci, 'utf8');
  add(ci, ciText, programsInShell(ciText));
  return found;
}
