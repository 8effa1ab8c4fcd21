// A Hugging Face Hub look-alike on loopback, for tests and benchmarks. It speaks the part of the
// Hub's HTTP API that @huggingface/hub and bake's downloader use, serves repos made of real files,
// and injects faults.
//
//   const hub = await startHubServer({
//     repos: { 'org/tiny': { files: await filesFromDir('/work/shared/models/stories260K/hf') } },
//     tokens: ['hf_testtoken123'],           // tokens the server accepts (others get 401)
//     faults: [{ kind: 'cut', path: 'model.safetensors', times: 3, cutAt: 'random' },
//              { kind: 'stall', on: 'api', endpoint: 'tree', times: 1 }],   // a tree page stops mid-body
//   });
//   hub.url                 // http://127.0.0.1:<port>  -> use as HF_ENDPOINT
//   hub.commitOf('org/tiny') // current commit sha of main
//   hub.faults.push(...)    // faults can be changed between calls
//   hub.stats.bytesFor('model.safetensors'); hub.stats.requests; hub.stats.reset()
//   hub.push('org/tiny', { files })        // a new commit on main (old commits stay resolvable)
//   await hub.close()
//
// Endpoints (as the real Hub):
//   GET  /api/models/{org}/{name}[/revision/{rev}]          model info; `sha` is the resolved commit
//   GET  /api/models/{org}/{name}/tree/{rev}[/{path}]?recursive=&expand=   paged with Link rel="next"
//   POST /api/models/{org}/{name}/paths-info/{rev}          {"paths": [...]}
//   GET|HEAD /{org}/{name}/resolve/{rev}/{path}             small files: the bytes, ETag = git sha1;
//        LFS files: 302 to a CDN origin (a second port, so a different origin) with X-Linked-Etag
//        (sha256) and X-Linked-Size. Every resolve answer carries X-Repo-Commit. Range requests
//        are honoured (206 + Content-Range; 416 past the end).
//   Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) and
//   X-Error-Message, with a JSON body {"error": ...}, like the Hub.
// Access: `private` repos answer RepoNotFound (401 anonymous, 404 with another token) unless a token
// in `readers` is sent; `gated` repos list and describe freely but refuse file downloads (GatedRepo:
// 401 anonymous, 403 token without access). A Bearer token not in `tokens` is a 401 everywhere.
// The CDN refuses (403) URLs older than `cdnTtlMs`, like an expired signed URL.
// Faults (HubFault): `status` answers a status instead (at resolve or the API), `cut` closes the
// connection mid-body (file bodies and JSON API answers), `stall` stops sending mid-body for a while
// (or for good), `flip` corrupts one byte, `slow` delays or throttles, `no-range` answers a Range request
// with the whole file (200), as servers without range support do; each matches by repo/path (API
// faults: by `endpoint`) and fires `times` times (default: always).
// `connectionBytesPerSecond` limits every connection's file bodies to that rate, as CDNs limit each
// connection (so N connections get N times the rate); each request record names its connection.
// `errorHeaders: false` leaves X-Error-Code/X-Error-Message off error answers (the JSON body stays), as
// some Hub routes and mirrors do, so a client must read the status and what it sent.
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { prng } from '../../src/util/prng.js';

/** File content: bytes, UTF-8 text, or a file on disk (streamed, never loaded whole). */
export type FileSource = Uint8Array | string | { file: string };

export interface HubRepoSpec {
  files: Record<string, FileSource>;
  private?: boolean;
  gated?: boolean;
  /** Tokens that may read a private or gated repo. */
  readers?: string[];
  /** Tags pointing at this commit. */
  tags?: string[];
  /** Which files are stored in LFS; default: weights/tokenizer extensions or > 10 MiB, as .gitattributes does. */
  lfs?: (path: string, size: number) => boolean;
}

export interface HubFault {
  kind: 'status' | 'cut' | 'stall' | 'flip' | 'slow' | 'no-range';
  /** 'file' (resolve and CDN answers, the default), 'api' (JSON API) or 'any'. */
  on?: 'file' | 'api' | 'any';
  /** API faults only: which call (model info, a tree page, paths-info); default any. */
  endpoint?: 'info' | 'tree' | 'paths-info';
  /** Only requests for this file path (exact string or RegExp). */
  path?: string | RegExp;
  repo?: string;
  /** How many matching requests it affects; default: all of them. Counts down as it fires. */
  times?: number;
  /** kind status: the status to answer (429, 500, 401, 403, 404...), with optional headers. */
  status?: number;
  retryAfter?: number;
  errorCode?: string;
  /**
   * kind cut: close the connection after this many body bytes of the response; or 'random': `times`
   * (default 1) distinct file offsets drawn uniformly over the file, each request cut at the next one.
   * On API answers: after this many bytes of the JSON body (default: half of it).
   */
  cutAt?: number | 'random';
  /** kind stall: stop after this many body bytes (default: half the answer) for `delayMs` (default: until the client gives up). */
  stallAt?: number;
  /** kind flip: XOR 0xff into the byte at this file offset (default: the middle of the file). */
  flipAt?: number;
  /** kind slow: wait this long before answering, and/or send the body at this rate. */
  delayMs?: number;
  bytesPerSecond?: number;
}

export interface HubRequestRecord {
  method: string;
  url: string;
  status: number;
  /** `hub` or `cdn`. */
  host: 'hub' | 'cdn';
  repo?: string;
  /** Repo file path for file requests. */
  path?: string;
  range?: string;
  /** Body bytes written for this request. */
  bytes: number;
  /** Whether an Authorization header came with it (the CDN must never see one). */
  authorization: boolean;
  cut?: boolean;
  /** Which connection it came on (numbered per server in order of arrival). */
  connection: number;
  /** When the request arrived and when its answer ended (ms since the epoch). */
  startedAt: number;
  endedAt?: number;
}

export interface HubServerStats {
  requests: HubRequestRecord[];
  /** Body bytes of file answers (resolve and CDN), all files. */
  readonly bytesServed: number;
  /** Body bytes of file answers for one path (any repo). */
  bytesFor(path: string): number;
  reset(): void;
}

export interface HubServer {
  url: string;
  cdnUrl: string;
  faults: HubFault[];
  stats: HubServerStats;
  commitOf(repo: string, revision?: string): string;
  push(repo: string, spec: HubRepoSpec): Promise<string>;
  close(): Promise<void>;
}

export interface HubServerOptions {
  repos: Record<string, HubRepoSpec>;
  faults?: HubFault[];
  /** Tokens the server knows; any other Bearer token is answered 401 (as the Hub does). */
  tokens?: string[];
  /** Tree entries per page (the Hub uses 1000 for recursive listings). */
  pageSize?: number;
  cdnTtlMs?: number;
  /** Seed for random cut points, so a failing run can be replayed. */
  seed?: number;
  /** Send X-Error-Code and X-Error-Message with errors (default true). */
  errorHeaders?: boolean;
  /** Every connection sends file bodies at most this fast (bytes per second), as a CDN limits each connection. */
  connectionBytesPerSecond?: number;
}

interface StoredFile {
  path: string;
  size: number;
  source: Uint8Array | { file: string };
  gitOid: string;
  sha256: string;
  lfs: boolean;
  /** git oid of the LFS pointer (what the tree lists as `oid` for LFS files). */
  pointerOid?: string;
  pointerSize?: number;
}

interface Commit {
  sha: string;
  files: Map<string, StoredFile>;
  date: string;
}

interface Repo {
  name: string;
  spec: HubRepoSpec;
  commits: Map<string, Commit>;
  branches: Map<string, string>;
  tags: Map<string, string>;
}

const LFS_EXTENSIONS = /\.(safetensors|bin|pt|pth|ckpt|pkl|onnx|gguf|model|msgpack|h5|tflite|npz|npy|ot|zip|gz|tar)$/i;

/** Every file under `dir` as a FileSource map, paths relative and POSIX. */
export async function filesFromDir(dir: string, prefix = ''): Promise<Record<string, FileSource>> {
  const out: Record<string, FileSource> = {};
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) Object.assign(out, await filesFromDir(dir, rel));
    else if (e.isFile()) out[rel] = { file: join(dir, rel) };
  }
  return out;
}

function gitBlobOid(data: Uint8Array): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

async function storeFile(path: string, src: FileSource, isLfs: (p: string, s: number) => boolean): Promise<StoredFile> {
  let size: number;
  let gitOid: string;
  let sha256: string;
  let source: Uint8Array | { file: string };
  if (typeof src === 'string' || src instanceof Uint8Array) {
    const bytes = typeof src === 'string' ? new TextEncoder().encode(src) : src;
    source = bytes;
    size = bytes.length;
    gitOid = gitBlobOid(bytes);
    sha256 = createHash('sha256').update(bytes).digest('hex');
  } else {
    size = (await stat(src.file)).size;
    const s1 = createHash('sha1').update(`blob ${size}\0`);
    const s256 = createHash('sha256');
    for await (const chunk of createReadStream(src.file, { highWaterMark: 4 << 20 })) {
      s1.update(chunk as Buffer);
      s256.update(chunk as Buffer);
    }
    gitOid = s1.digest('hex');
    sha256 = s256.digest('hex');
    source = src;
  }
  const lfs = isLfs(path, size);
  const f: StoredFile = { path, size, source, gitOid, sha256, lfs };
  if (lfs) {
    const pointer = new TextEncoder().encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`);
    f.pointerOid = gitBlobOid(pointer);
    f.pointerSize = pointer.length;
  }
  return f;
}

export async function startHubServer(options: HubServerOptions): Promise<HubServer> {
  const repos = new Map<string, Repo>();
  const tokens = new Set(options.tokens ?? []);
  const pageSize = options.pageSize ?? 1000;
  const cdnTtlMs = options.cdnTtlMs ?? 3_600_000;
  const random = prng(options.seed ?? 42);
  const cdnKey = randomBytes(16);
  const faults: HubFault[] = options.faults ?? [];
  const errorHeaders = options.errorHeaders ?? true;
  /** Planned file offsets of 'random' cut faults, drawn on first use. */
  const cutPlans = new WeakMap<HubFault, number[]>();

  function plannedCut(fault: HubFault, size: number, start: number): number | undefined {
    let plan = cutPlans.get(fault);
    if (!plan) {
      const want = Math.min((fault.times ?? 0) + 1, size - 1);
      const offsets = new Set<number>();
      while (offsets.size < want) offsets.add(1 + Math.floor(random() * (size - 1)));
      plan = [...offsets].sort((a, b) => a - b);
      cutPlans.set(fault, plan);
    }
    while (plan.length > 0 && plan[0]! <= start) plan.shift();
    return plan.shift();
  }
  let requests: HubRequestRecord[] = [];

  async function push(name: string, spec: HubRepoSpec): Promise<string> {
    const isLfs = spec.lfs ?? ((p: string, s: number) => LFS_EXTENSIONS.test(p) || s > 10 * 1024 * 1024);
    const files = new Map<string, StoredFile>();
    for (const path of Object.keys(spec.files).sort()) files.set(path, await storeFile(path, spec.files[path]!, isLfs));
    let repo = repos.get(name);
    const parent = repo?.branches.get('main') ?? '';
    const sha = createHash('sha1')
      .update(`${name}\n${parent}\n`)
      .update([...files.values()].map((f) => `${f.path} ${f.gitOid}`).join('\n'))
      .digest('hex');
    if (!repo) {
      repo = { name, spec, commits: new Map(), branches: new Map(), tags: new Map() };
      repos.set(name, repo);
    }
    repo.spec = spec;
    repo.commits.set(sha, { sha, files, date: new Date(Date.UTC(2024, 0, 1 + repo.commits.size)).toISOString() });
    repo.branches.set('main', sha);
    for (const tag of spec.tags ?? []) repo.tags.set(tag, sha);
    return sha;
  }
  for (const [name, spec] of Object.entries(options.repos)) await push(name, spec);

  function takeFault(kinds: HubFault['kind'][], where: 'file' | 'api', repo: string | undefined, path: string | undefined, endpoint?: HubFault['endpoint']): HubFault | undefined {
    for (const f of faults) {
      if (!kinds.includes(f.kind)) continue;
      const on = f.on ?? 'file';
      if (on !== 'any' && on !== where) continue;
      if (f.endpoint !== undefined && f.endpoint !== endpoint) continue;
      if (f.repo !== undefined && f.repo !== repo) continue;
      if (f.path !== undefined) {
        if (path === undefined) continue;
        if (typeof f.path === 'string' ? f.path !== path : !f.path.test(path)) continue;
      }
      if (f.times !== undefined) {
        if (f.times <= 0) continue;
        f.times--;
      }
      return f;
    }
    return undefined;
  }

  /** Connection numbers, and when each connection may send its next byte under connectionBytesPerSecond. */
  const connectionIds = new WeakMap<object, number>();
  const nextSendAt = new WeakMap<object, number>();
  let connectionCount = 0;
  function connectionOf(req: IncomingMessage): number {
    const socket = req.socket as object;
    let id = connectionIds.get(socket);
    if (id === undefined) connectionIds.set(socket, (id = ++connectionCount));
    return id;
  }

  function record(req: IncomingMessage, host: 'hub' | 'cdn', extra: Partial<HubRequestRecord>): HubRequestRecord {
    const r: HubRequestRecord = {
      method: req.method ?? 'GET',
      url: req.url ?? '',
      status: 0,
      host,
      bytes: 0,
      authorization: req.headers.authorization !== undefined,
      connection: connectionOf(req),
      startedAt: Date.now(),
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...extra,
    };
    requests.push(r);
    return r;
  }

  function sendError(res: ServerResponse, rec: HubRequestRecord, status: number, code: string | undefined, message: string, headers: Record<string, string> = {}): void {
    rec.status = status;
    const body = JSON.stringify({ error: message });
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-request-id': `req-${requests.length}`,
      ...(code && errorHeaders ? { 'x-error-code': code } : {}),
      ...(errorHeaders ? { 'x-error-message': message } : {}),
      ...headers,
    });
    res.end(body);
  }

  /** A JSON answer; a `cut` or `stall` fault sends only part of its body (the headers promise all of it). */
  async function sendJson(res: ServerResponse, rec: HubRequestRecord, value: unknown, headers: Record<string, string> = {}, fault?: HubFault): Promise<void> {
    rec.status = 200;
    const body = Buffer.from(JSON.stringify(value));
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length, ...headers });
    if (!fault) {
      rec.bytes = body.length;
      return void res.end(body);
    }
    const at = Math.max(1, Math.min(body.length - 1, (fault.kind === 'cut' ? (typeof fault.cutAt === 'number' ? fault.cutAt : undefined) : fault.stallAt) ?? Math.floor(body.length / 2)));
    await writeAndWait(res, body.subarray(0, at));
    rec.bytes = at;
    if (fault.kind === 'cut') {
      rec.cut = true;
      res.socket?.destroy();
      return;
    }
    await stall(res, fault.delayMs);
    if (res.destroyed) return;
    rec.bytes = body.length;
    res.end(body.subarray(at));
  }

  /** undefined = anonymous, null = unknown token (already answered 401). */
  function caller(req: IncomingMessage, res: ServerResponse, rec: HubRequestRecord): string | undefined | null {
    const auth = req.headers.authorization;
    if (!auth) return undefined;
    const token = /^Bearer (.+)$/.exec(auth)?.[1];
    if (!token || !tokens.has(token)) {
      sendError(res, rec, 401, undefined, 'Invalid credentials in Authorization header');
      return null;
    }
    return token;
  }

  function findRepo(name: string, token: string | undefined, res: ServerResponse, rec: HubRequestRecord): Repo | undefined {
    const repo = repos.get(name);
    const canRead = (r: Repo) => !r.spec.private || (token !== undefined && (r.spec.readers ?? []).includes(token));
    if (!repo || !canRead(repo)) {
      // Like the Hub: a private repo looks exactly like a missing one; 401 to anonymous callers.
      sendError(res, rec, token ? 404 : 401, 'RepoNotFound', 'Repository not found');
      return undefined;
    }
    return repo;
  }

  function findCommit(repo: Repo, rev: string, res: ServerResponse, rec: HubRequestRecord): Commit | undefined {
    const name = rev === 'HEAD' ? 'main' : rev;
    const sha = repo.branches.get(name) ?? repo.tags.get(name) ?? (repo.commits.has(name) ? name : undefined);
    const commit = sha ? repo.commits.get(sha) : undefined;
    if (!commit) {
      sendError(res, rec, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      return undefined;
    }
    return commit;
  }

  function treeEntry(f: StoredFile, commit: Commit, expand: boolean): Record<string, unknown> {
    const e: Record<string, unknown> = { type: 'file', oid: f.lfs ? f.pointerOid : f.gitOid, size: f.size, path: f.path };
    if (f.lfs) e.lfs = { oid: f.sha256, size: f.size, pointerSize: f.pointerSize };
    // Simplification: every file's last commit is the commit asked about.
    if (expand) {
      e.lastCommit = { id: commit.sha, title: 'upload', date: commit.date };
      e.securityFileStatus = { status: 'safe' };
    }
    return e;
  }

  function dirEntries(commit: Commit): Map<string, Record<string, unknown>> {
    const dirs = new Map<string, Record<string, unknown>>();
    for (const f of commit.files.values()) {
      const parts = f.path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (!dirs.has(d)) dirs.set(d, { type: 'directory', oid: createHash('sha1').update(`tree ${commit.sha} ${d}`).digest('hex'), size: 0, path: d });
      }
    }
    return dirs;
  }

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL, rec: HubRequestRecord): Promise<void> {
    const m = /^\/api\/models\/([^/]+)\/([^/]+)(?:\/(revision|tree|paths-info)\/([^/]+)(\/.*)?)?$/.exec(url.pathname);
    if (!m) return sendError(res, rec, 404, undefined, `no route for ${url.pathname}`);
    const name = `${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`;
    rec.repo = name;
    const action = m[3] ?? 'revision';
    const endpoint = action === 'revision' ? 'info' : (action as 'tree' | 'paths-info');
    const fault = takeFault(['status', 'slow'], 'api', name, undefined, endpoint);
    if (fault?.kind === 'slow' && fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault?.kind === 'status') return faultStatus(res, rec, fault);
    const token = caller(req, res, rec);
    if (token === null) return;
    const repo = findRepo(name, token, res, rec);
    if (!repo) return;
    const commit = findCommit(repo, decodeURIComponent(m[4] ?? 'main'), res, rec);
    if (!commit) return;
    const bodyFault = takeFault(['cut', 'stall'], 'api', name, undefined, endpoint);
    if (action === 'revision') {
      return sendJson(res, rec, {
        _id: createHash('sha1').update(name).digest('hex').slice(0, 24),
        id: name,
        author: name.split('/')[0],
        sha: commit.sha,
        private: !!repo.spec.private,
        gated: repo.spec.gated ? 'auto' : false,
        disabled: false,
        downloads: 0,
        likes: 0,
        lastModified: commit.date,
        createdAt: '2024-01-01T00:00:00.000Z',
        tags: [],
        siblings: [...commit.files.keys()].map((rfilename) => ({ rfilename })),
      }, {}, bodyFault);
    }
    if (action === 'tree') {
      const under = m[5] ? decodeURIComponent(m[5].slice(1)) : '';
      const recursive = url.searchParams.get('recursive') === 'true';
      const expand = url.searchParams.get('expand') === 'true';
      const all = [...dirEntries(commit).values(), ...[...commit.files.values()].map((f) => treeEntry(f, commit, expand))]
        .filter((e) => {
          const p = e.path as string;
          if (under && !p.startsWith(`${under}/`)) return false;
          const rest = under ? p.slice(under.length + 1) : p;
          return recursive || !rest.includes('/');
        })
        .sort((a, b) => ((a.path as string) < (b.path as string) ? -1 : 1));
      if (under && all.length === 0) return sendError(res, rec, 404, 'EntryNotFound', `${under} does not exist on "${m[4]}"`);
      const cursor = Number(url.searchParams.get('cursor') ?? 0);
      const page = all.slice(cursor, cursor + pageSize);
      const headers: Record<string, string> = {};
      if (cursor + pageSize < all.length) {
        const next = new URL(url.toString());
        next.searchParams.set('cursor', String(cursor + pageSize));
        headers.link = `<${hubUrl}${next.pathname}${next.search}>; rel="next"`;
      }
      return sendJson(res, rec, page, headers, bodyFault);
    }
    // paths-info
    const body = await readBody(req);
    let paths: unknown;
    let expand = false;
    try {
      const parsed = JSON.parse(body) as { paths?: unknown; expand?: unknown };
      paths = parsed.paths;
      expand = parsed.expand === true;
    } catch {
      return sendError(res, rec, 400, undefined, 'body must be JSON {"paths": [...]}');
    }
    if (!Array.isArray(paths)) return sendError(res, rec, 400, undefined, 'paths must be an array');
    const dirs = dirEntries(commit);
    const out = paths.flatMap((p) => {
      const f = commit.files.get(String(p));
      if (f) return [treeEntry(f, commit, expand)];
      const d = dirs.get(String(p));
      return d ? [d] : [];
    });
    return sendJson(res, rec, out, {}, bodyFault);
  }

  function faultStatus(res: ServerResponse, rec: HubRequestRecord, fault: HubFault): void {
    const status = fault.status ?? 500;
    const headers: Record<string, string> = {};
    if (fault.retryAfter !== undefined) headers['retry-after'] = String(fault.retryAfter);
    const message = status === 429 ? 'Too Many Requests' : status >= 500 ? 'Internal Error' : `injected ${status}`;
    sendError(res, rec, status, fault.errorCode, message, headers);
  }

  async function handleResolve(req: IncomingMessage, res: ServerResponse, url: URL, rec: HubRequestRecord): Promise<void> {
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return sendError(res, rec, 404, undefined, `no route for ${url.pathname}`);
    const name = `${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`;
    const path = m[4]!.split('/').map(decodeURIComponent).join('/');
    rec.repo = name;
    rec.path = path;
    const fault = takeFault(['status'], 'file', name, path);
    if (fault) return faultStatus(res, rec, fault);
    const token = caller(req, res, rec);
    if (token === null) return;
    const repo = findRepo(name, token, res, rec);
    if (!repo) return;
    const commit = findCommit(repo, decodeURIComponent(m[3]!), res, rec);
    if (!commit) return;
    const file = commit.files.get(path);
    if (!file) return sendError(res, rec, 404, 'EntryNotFound', `${path} does not exist on "${m[3]}"`, { 'x-repo-commit': commit.sha });
    if (repo.spec.gated && (token === undefined || !(repo.spec.readers ?? []).includes(token))) {
      const message = `Access to model ${name} is restricted. You must have access to it and be authenticated to access it. Please log in.`;
      return sendError(res, rec, token ? 403 : 401, 'GatedRepo', message);
    }
    const common = { 'x-repo-commit': commit.sha, 'accept-ranges': 'bytes' };
    if (file.lfs) {
      const expires = Date.now() + cdnTtlMs;
      const q = new URLSearchParams({ repo: name, commit: commit.sha, path, expires: String(expires) });
      q.set('sig', createHmac('sha256', cdnKey).update(q.toString()).digest('hex'));
      rec.status = 302;
      res.writeHead(302, {
        ...common,
        location: `${cdnUrl}/cdn/${file.sha256}?${q.toString()}`,
        etag: `"${file.pointerOid}"`,
        'x-linked-etag': `"${file.sha256}"`,
        'x-linked-size': String(file.size),
        'content-length': 0,
      });
      res.end();
      return;
    }
    await sendFile(req, res, rec, file, { ...common, etag: `"${file.gitOid}"` });
  }

  async function handleCdn(req: IncomingMessage, res: ServerResponse, url: URL, rec: HubRequestRecord): Promise<void> {
    const q = new URLSearchParams(url.search);
    const sig = q.get('sig');
    q.delete('sig');
    const good = sig === createHmac('sha256', cdnKey).update(q.toString()).digest('hex');
    const name = q.get('repo') ?? '';
    const path = q.get('path') ?? '';
    rec.repo = name;
    rec.path = path;
    if (!good) return sendError(res, rec, 403, undefined, 'SignatureDoesNotMatch');
    if (Number(q.get('expires')) < Date.now()) return sendError(res, rec, 403, undefined, 'Request has expired');
    const file = repos.get(name)?.commits.get(q.get('commit') ?? '')?.files.get(path);
    if (!file) return sendError(res, rec, 404, undefined, 'NoSuchKey');
    await sendFile(req, res, rec, file, { etag: `"${file.sha256.slice(0, 32)}"`, 'accept-ranges': 'bytes' });
  }

  /** Serves a file (or a Range of it) with whatever data faults apply. */
  async function sendFile(req: IncomingMessage, res: ServerResponse, rec: HubRequestRecord, file: StoredFile, headers: Record<string, string>): Promise<void> {
    let start = 0;
    let end = file.size; // exclusive
    let status = 200;
    const range = takeFault(['no-range'], 'file', rec.repo, file.path) ? undefined : parseRange(req.headers.range, file.size);
    if (range === 'unsatisfiable') {
      rec.status = 416;
      res.writeHead(416, { ...headers, 'content-range': `bytes */${file.size}`, 'content-length': 0 });
      res.end();
      return;
    }
    if (range) {
      [start, end] = range;
      status = 206;
      headers['content-range'] = `bytes ${start}-${end - 1}/${file.size}`;
    }
    const slow = takeFault(['slow'], 'file', rec.repo, file.path);
    const cut = end - start >= 2 ? takeFault(['cut'], 'file', rec.repo, file.path) : undefined;
    const stalled = end - start >= 2 ? takeFault(['stall'], 'file', rec.repo, file.path) : undefined;
    const flip = takeFault(['flip'], 'file', rec.repo, file.path);
    if (slow?.delayMs) await new Promise((r) => setTimeout(r, slow.delayMs));
    rec.status = status;
    res.writeHead(status, { ...headers, 'content-type': 'application/octet-stream', 'content-length': end - start });
    if (req.method === 'HEAD') return void res.end();
    let cutAfter = Infinity;
    if (cut) {
      const length = end - start;
      if (cut.cutAt === 'random') {
        const at = plannedCut(cut, file.size, start);
        cutAfter = at === undefined ? Infinity : at - start;
      } else {
        cutAfter = Math.min(cut.cutAt ?? Math.floor(length / 2), length);
      }
    }
    const flipAt = flip ? (flip.flipAt ?? Math.floor(file.size / 2)) : -1;
    let stallAfter = stalled ? Math.min(stalled.stallAt ?? Math.floor((end - start) / 2), end - start - 1) : Infinity;
    const rate = slow?.bytesPerSecond;
    const perConnection = options.connectionBytesPerSecond;
    let sent = 0;
    const began = Date.now();
    for await (const raw of readSource(file, start, end)) {
      let chunk = raw;
      if (flipAt >= start + sent && flipAt < start + sent + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[flipAt - start - sent] ^= 0xff;
      }
      if (sent + chunk.length > cutAfter) chunk = chunk.subarray(0, cutAfter - sent);
      if (sent + chunk.length > stallAfter) {
        const head = chunk.subarray(0, stallAfter - sent);
        await writeAndWait(res, head);
        sent += head.length;
        rec.bytes += head.length;
        await stall(res, stalled!.delayMs);
        if (res.destroyed) return;
        chunk = chunk.subarray(head.length);
        stallAfter = Infinity;
      }
      if (chunk.length > 0) {
        const ok = res.write(chunk);
        sent += chunk.length;
        rec.bytes += chunk.length;
        if (!ok) {
          await new Promise<void>((r) => {
            const done = () => {
              res.off('drain', done).off('close', done);
              r();
            };
            res.on('drain', done).on('close', done);
          });
        }
        if (res.destroyed) return;
      }
      if (sent >= cutAfter) {
        rec.cut = true;
        await new Promise<void>((r) => res.write('', () => r()));
        res.socket?.destroy();
        return;
      }
      if (rate) {
        const due = began + (sent / rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      if (perConnection && chunk.length > 0) {
        // The connection's budget: no credit for idle time, so a connection never bursts above the rate.
        const socket = req.socket as object;
        const due = Math.max(nextSendAt.get(socket) ?? 0, Date.now()) + (chunk.length / perConnection) * 1000;
        nextSendAt.set(socket, due);
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (res.destroyed) return;
      }
    }
    res.end();
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse, host: 'hub' | 'cdn'): Promise<void> {
    const url = new URL(req.url ?? '/', host === 'hub' ? hubUrl : cdnUrl);
    const rec = record(req, host, {});
    res.on('close', () => (rec.endedAt = Date.now()));
    try {
      if (host === 'cdn') {
        if (url.pathname.startsWith('/cdn/') && (req.method === 'GET' || req.method === 'HEAD')) return await handleCdn(req, res, url, rec);
        return sendError(res, rec, 404, undefined, 'no such CDN path');
      }
      if (url.pathname.startsWith('/api/')) return await handleApi(req, res, url, rec);
      if (req.method === 'GET' || req.method === 'HEAD') return await handleResolve(req, res, url, rec);
      return sendError(res, rec, 405, undefined, 'method not allowed');
    } catch (err) {
      if (!res.headersSent) sendError(res, rec, 500, undefined, String(err));
      else res.destroy();
    }
  }

  const hubServer = createServer((req, res) => void onRequest(req, res, 'hub'));
  const cdnServer = createServer((req, res) => void onRequest(req, res, 'cdn'));
  function writeAndWait(res: ServerResponse, chunk: Uint8Array): Promise<void> {
    return new Promise<void>((r) => res.write(chunk, () => r()));
  }

  /** Sends nothing for `ms` (default: until the client closes the connection). */
  function stall(res: ServerResponse, ms: number | undefined): Promise<void> {
    return new Promise<void>((r) => {
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        res.off('close', done);
        r();
      }
      res.on('close', done);
    });
  }

  const listen = (s: Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
  const hubUrl = `http://127.0.0.1:${await listen(hubServer)}`;
  const cdnUrl = `http://127.0.0.1:${await listen(cdnServer)}`;

  const stats: HubServerStats = {
    get requests() {
      return requests;
    },
    set requests(v) {
      requests = v;
    },
    get bytesServed() {
      return requests.filter((r) => r.path !== undefined).reduce((n, r) => n + r.bytes, 0);
    },
    bytesFor(path: string) {
      return requests.filter((r) => r.path === path).reduce((n, r) => n + r.bytes, 0);
    },
    reset() {
      requests = [];
    },
  };

  return {
    url: hubUrl,
    cdnUrl,
    faults,
    stats,
    commitOf(name: string, revision = 'main') {
      const repo = repos.get(name);
      const sha = repo?.branches.get(revision) ?? repo?.tags.get(revision);
      if (!sha) throw new Error(`hub-server: no ${name}@${revision}`);
      return sha;
    },
    push,
    async close() {
      for (const s of [hubServer, cdnServer]) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
    },
  };
}

function parseRange(header: string | undefined, size: number): [number, number] | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined; // malformed or multi-range: ignore, as servers may
  if (m[1] === '') {
    const n = Math.min(Number(m[2]), size);
    return n === 0 ? 'unsatisfiable' : [size - n, size];
  }
  const start = Number(m[1]);
  const last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || last < start) return 'unsatisfiable';
  return [start, last + 1];
}

async function* readSource(file: StoredFile, start: number, end: number): AsyncGenerator<Buffer> {
  if (end <= start) return;
  if (file.source instanceof Uint8Array) {
    for (let at = start; at < end; at += 64 * 1024) yield Buffer.from(file.source.buffer, file.source.byteOffset + at, Math.min(64 * 1024, end - at));
    return;
  }
  for await (const chunk of createReadStream(file.source.file, { start, end: end - 1, highWaterMark: 1024 * 1024 })) yield chunk as Buffer;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 1 << 20) req.destroy(new Error('body too large'));
      else parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}
