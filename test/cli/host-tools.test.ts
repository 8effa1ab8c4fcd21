// Every program the tests, scripts and benches call comes from scripts/host-tools.sh's list (which the
// Makefile and docker-env.sh install from), so a fresh Debian machine gets it or fails early naming it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { calledPrograms, programsInScript, programsInShell } from '../support/called-programs.js';
import { projectRoot } from '../support/cli.js';
import { HOST_TOOLS, hostToolList } from '../support/host-tools.js';

const SELF = relative(projectRoot, import.meta.filename);
// The scanner's own file holds example calls in its comments.
const SCANNER = join('test', 'support', 'called-programs.ts');

// The snippets below write quotes as ‹ › so that no scanner reading this file takes them for calls.
const quoted = (lines: string[]) => lines.join('\n').replace(/[‹›]/g, "'");

test('the scanner finds programs called from TypeScript and from shell', () => {
  const ts = quoted([
    'spawn(‹alpha›, [‹x›]);',
    'await run(‹beta›, [a]);',
    'execFileSync(‹gamma›);',
    'run(join(bin, ‹delta›), args);',
    'const X = ‹/usr/sbin/epsilon›;',
    's.run(feeds); notrun(‹zeta›, []);',
  ]);
  assert.deepEqual(programsInScript(ts).map((p) => p.program).sort(), '/usr/sbin/epsilon alpha beta delta gamma'.split(' '));
  const sh = quoted([
    'f() { echo hi; }',
    'X=1 alpha -v | beta >&2 && f',
    'for x in $(gamma 1 2); do [ -x /usr/bin/delta ] || { epsilon "$(zeta)"; }; done',
    'printf ‹%s› ‹RUN notme /usr/bin/notme› >"$out"',
    'case "$(eta)" in a|b) theta ;; *) ;; esac',
    'arr=(not commands) # comment notme',
    'cat <<EOF',
    'notme either',
    'EOF',
    'command -v' + ' iota >/dev/null',
  ]);
  assert.deepEqual([...new Set(programsInShell(sh).map((p) => p.program))].sort(), '/usr/bin/delta alpha beta cat epsilon eta gamma iota theta zeta'.split(' '));
});

test('every program a test, script, bench or the Makefile calls is in scripts/host-tools.sh', async () => {
  const listed = hostToolList();
  const called = await calledPrograms(projectRoot, [SELF, SCANNER]);
  assert.ok(called.length > 30, `the scan found only ${called.length} calls: is it looking in the right place?`);
  const unlisted = new Map<string, string>();
  for (const { program, at } of called) {
    if (listed.has(program)) continue;
    // A relative path is a project file (scripts/llama-tools.sh): it must be in the repository.
    if (!program.startsWith('/') && program.includes('/') && existsSync(join(projectRoot, program))) continue;
    if (!unlisted.has(program)) unlisted.set(program, at);
  }
  assert.deepEqual([...unlisted].map(([p, at]) => `${p} (called at ${at})`), [], 'add these to scripts/host-tools.sh with their Debian package');
});

test('programs the list says a project script makes are named by that script', async () => {
  for (const [program, source] of hostToolList()) {
    if (!source.startsWith('@')) continue;
    const script = await readFile(join(projectRoot, source.slice(1)), 'utf8');
    assert.ok(new RegExp(`\\b${program}\\b`).test(script), `${source.slice(1)} does not make ${program}`);
  }
});

test('host-tools.sh check names each missing program and its Debian package and exits 1 (shell builtins only)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-host-tools-'));
  try {
    await symlink(process.execPath, join(dir, 'skopeo')); // present: anything executable will do
    // PATH holds only `dir`, so the check itself may call no program.
    const r = spawnSync('bash', ['-c', 'PATH=$0 && . "$1" check skopeo umoci git', dir, HOST_TOOLS], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.deepEqual(r.stderr.trim().split('\n'), [
      'missing umoci: install Debian package umoci (make test does this as root)',
      'missing git: install Debian package git (make test does this as root)',
    ]);
    const ok = spawnSync('bash', ['-c', 'PATH=$0 && . "$1" check skopeo', dir, HOST_TOOLS], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    const unknown = spawnSync('bash', [HOST_TOOLS, 'check', 'no-such-tool'], { encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /no-such-tool is not in scripts\/host-tools\.sh's list/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('make test, make tools and make bench install the listed tools before anything else', () => {
  for (const target of ['test', 'tools', 'bench']) {
    // Outside any make run (a parent make's MAKEFLAGS/MAKELEVEL would add "Entering directory" lines).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(MAKEFLAGS|MAKELEVEL|MFLAGS)$/.test(k)));
    const r = spawnSync('make', ['-n', '-B', '--no-print-directory', target], { cwd: projectRoot, encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split('\n')[0], 'bash scripts/host-tools.sh install', `make ${target} runs first: ${r.stdout.split('\n')[0]}`);
  }
});
