// The build context sent to the engine: a tar of the listed paths of the project, filtered by the
// project's .dockerignore the way `docker build` filters it. Through the API the whole context is
// uploaded (no BuildKit session to fetch files lazily), so callers name only what the Dockerfile uses.
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join, posix, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import dockerignoreModule from '@balena/dockerignore';
import tar from 'tar-stream';
import { InputError } from '../../util/errors.js';
import { safeJoin } from '../../util/fs.js';

// The package is CommonJS (`module.exports = factory`) with an ES-style `export default` in its types.
const dockerignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;

export interface ContextSpec {
  /** Project root: the context directory (paths in the Dockerfile are relative to it). */
  root: string;
  /** Files or folders under `root` to send (POSIX, relative). */
  include: string[];
  /** Ignore file (project-relative) instead of `.dockerignore`, e.g. docker/bake.Dockerfile.dockerignore. */
  ignoreFile?: string;
  /** Extra files placed in the context at the given path (e.g. a generated Dockerfile). */
  extra?: { path: string; content: string | Uint8Array }[];
}

/** Reads `<root>/.dockerignore` (or `ignoreFile`) into a filter: true = send the path. */
export async function contextFilter(root: string, ignoreFile = '.dockerignore'): Promise<(rel: string) => boolean> {
  let text = '';
  try {
    text = await readFile(join(root, ignoreFile), 'utf8');
  } catch {
    return () => true;
  }
  const ig = dockerignore({ ignorecase: false }).add(text);
  return (rel: string) => !ig.ignores(rel);
}

/** Every path `spec` sends, sorted, after .dockerignore; folders walked. */
export async function listContext(spec: ContextSpec): Promise<string[]> {
  const keep = await contextFilter(spec.root, spec.ignoreFile);
  const out = new Set<string>();
  async function walk(rel: string): Promise<void> {
    if (!keep(rel)) return;
    const abs = join(spec.root, rel);
    const st = await lstat(abs);
    out.add(rel);
    if (!st.isDirectory()) return;
    for (const name of (await readdir(abs)).sort()) await walk(posix.join(rel, name));
  }
  for (const inc of spec.include) {
    const abs = safeJoin(spec.root, inc);
    if (!abs) throw new InputError(`build context path ${JSON.stringify(inc)} is outside the project ${spec.root}`, { expected: 'a relative path inside the project' });
    const rel = relative(spec.root, abs).split(sep).join('/');
    try {
      await lstat(abs);
    } catch {
      throw new InputError(`build context path ${rel} does not exist under ${spec.root}`, { hint: 'run from the project root, or check the recipe\'s model paths' });
    }
    // Parent folders so the tar is well-formed.
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) out.add(parts.slice(0, i).join('/'));
    await walk(rel);
  }
  return [...out].sort();
}

/** The context as a tar stream. Entries have mtime 0 and uid/gid 0: the bytes depend on content only. */
export function packContext(spec: ContextSpec): Readable {
  // tar-stream's Pack is a streamx Readable; node's stream APIs (and dockerode) take it as one.
  const pack = tar.pack();
  void (async () => {
    try {
      for (const e of spec.extra ?? []) {
        const data = typeof e.content === 'string' ? Buffer.from(e.content) : Buffer.from(e.content);
        await entry(pack, { name: e.path, size: data.length, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, data);
      }
      const extraPaths = new Set((spec.extra ?? []).map((e) => e.path));
      for (const rel of await listContext(spec)) {
        if (extraPaths.has(rel)) continue;
        const abs = join(spec.root, rel);
        const st = await lstat(abs);
        const header = { name: rel, mode: st.mode & 0o7777, mtime: new Date(0), uid: 0, gid: 0 };
        if (st.isDirectory()) await entry(pack, { ...header, type: 'directory' });
        else if (st.isSymbolicLink()) await entry(pack, { ...header, type: 'symlink', linkname: await readlink(abs) });
        else if (st.isFile()) {
          const sink = pack.entry({ ...header, size: st.size });
          await pipeline(createReadStream(abs, { highWaterMark: 1 << 20 }), sink);
        }
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return pack as unknown as Readable;
}

function entry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, data?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(header, data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
  });
}
