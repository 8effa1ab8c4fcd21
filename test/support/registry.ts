// A real registry for tests: Debian's docker-registry (distribution 2.8) on a free loopback port,
// storing into a temp folder, plus a proxy in front of it that can fail chosen requests.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomBytes, sign as cryptoSign, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export interface TestRegistry {
  /** host:port, for image references. */
  host: string;
  url: string;
  root: string;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A fixed test account for the htpasswd-protected registry. */
export const TEST_USER = { username: 'bake', password: 's3cret-test-pass' };
// `htpasswd -nbB -C 4 bake s3cret-test-pass` (apache2-utils); bcrypt, the only scheme distribution takes.
const TEST_HTPASSWD = 'bake:$2y$04$LC9X.f1adEazBTt6QaQdreZ7Qsry12brUdE5LMvKD71ZaCdmYUJfS\n';

export async function startRegistry(opts: { readonly?: boolean; htpasswd?: boolean; tokenAuth?: boolean } = {}): Promise<TestRegistry> {
  const root = await mkdtemp(join(tmpdir(), 'bake-registry-'));
  const tokens = opts.tokenAuth ? await startTokenServer(root) : undefined;
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  // Debian's stock config turns on htpasswd auth; ours is open, loopback only, deletable.
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(root, 'data')}`,
    '  delete:',
    '    enabled: true',
    ...(opts.readonly ? ['  maintenance:', '    readonly:', '      enabled: true'] : []),
    ...(opts.htpasswd ? ['auth:', '  htpasswd:', '    realm: bake-test', `    path: ${join(root, 'htpasswd')}`] : []),
    ...(tokens
      ? ['auth:', '  token:', `    realm: ${tokens.realm}`, `    service: ${TOKEN_SERVICE}`, `    issuer: ${TOKEN_ISSUER}`, `    rootcertbundle: ${tokens.certFile}`]
      : []),
    'http:',
    `  addr: ${host}`,
    '',
  ].join('\n');
  await writeFile(join(root, 'config.yml'), config);
  if (opts.htpasswd) await writeFile(join(root, 'htpasswd'), TEST_HTPASSWD);
  const child: ChildProcess = spawn(REGISTRY_BIN, ['serve', join(root, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://${host}`;
  for (let i = 0; ; i++) {
    const ok = await fetch(`${url}/v2/`).then((r) => r.ok || r.status === 401, () => false);
    if (ok) break;
    if (i > 100 || child.exitCode !== null) {
      child.kill();
      throw new Error(`docker-registry did not start on ${host}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    url,
    root,
    async close() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await tokens?.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** undefined: pass; a status: answer it without forwarding; 'drop': cut the connection; { after }: forward, then answer `after` instead of the real reply. */
export type Verdict = number | 'drop' | { after: number } | undefined;

const TOKEN_SERVICE = 'bake-test-registry';
const TOKEN_ISSUER = 'bake-test-issuer';

/**
 * The token service of distribution's token auth (the flow Docker Hub and GHCR use): the registry
 * answers 401 with a Bearer challenge, the client fetches a JWT here with its credentials, the
 * registry checks the JWT's signature against our self-signed certificate. TEST_USER gets every
 * action asked for; anyone else gets none.
 */
async function startTokenServer(root: string): Promise<{ realm: string; certFile: string; close(): Promise<void> }> {
  const keyFile = join(root, 'token-key.pem');
  const certFile = join(root, 'token-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=bake-test-token'], { stdio: 'ignore' });
  const key = createPrivateKey(await readFile(keyFile));
  const der = new X509Certificate(await readFile(certFile)).raw.toString('base64');
  const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    const [user, pass] = basic ? Buffer.from(basic[1]!, 'base64').toString().split(':') : [];
    const trusted = user === TEST_USER.username && pass === TEST_USER.password;
    const access = trusted
      ? url.searchParams.getAll('scope').map((scope) => {
          const [type, name, actions] = scope.split(':');
          return { type, name, actions: (actions ?? '').split(',') };
        })
      : [];
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c: [der] }));
    const claims = b64url(JSON.stringify({ iss: TOKEN_ISSUER, sub: user ?? '', aud: TOKEN_SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access }));
    const signature = cryptoSign('sha256', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${header}.${claims}.${b64url(signature)}`, expires_in: 300 }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    realm: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    certFile,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export interface FaultyProxy {
  host: string;
  /** Every request seen, as "METHOD path". */
  seen: string[];
  close(): Promise<void>;
}

/**
 * An HTTP proxy to `target` (host:port) that asks `fault(method, path, n)` per request: undefined
 * passes it through, a number answers with that status instead (n counts requests with the same method).
 */
export async function startFaultyProxy(target: string, fault: (method: string, path: string, n: number) => Verdict): Promise<FaultyProxy> {
  const seen: string[] = [];
  const counts = new Map<string, number>();
  const [thost, tport] = target.split(':');
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    const n = (counts.get(method) ?? 0) + 1;
    counts.set(method, n);
    seen.push(`${method} ${req.url}`);
    const verdict = fault(method, req.url ?? '/', n);
    if (verdict === 'drop') {
      req.resume();
      req.on('end', () => req.socket.destroy());
      return;
    }
    if (typeof verdict === 'number') {
      req.resume();
      req.on('end', () => {
        res.writeHead(verdict, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'TEST_FAULT', message: `injected ${verdict}` }] }));
      });
      return;
    }
    const up = httpRequest({ host: thost, port: Number(tport), method, path: req.url, headers: { ...req.headers, host: target } }, (ur) => {
      if (typeof verdict === 'object') {
        // The registry did the work; the client is told it failed (a lost reply).
        ur.resume();
        res.writeHead(verdict.after, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'TEST_FAULT', message: `reply replaced by ${verdict.after}` }] }));
        return;
      }
      const headers = { ...ur.headers };
      // Locations point at the registry; rewrite them to come back through us.
      if (typeof headers.location === 'string') headers.location = headers.location.replace(`http://${target}`, `http://${addr()}`);
      res.writeHead(ur.statusCode ?? 502, headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = () => `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host: addr(),
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
