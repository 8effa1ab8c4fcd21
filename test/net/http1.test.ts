// The HTTP/1.1 client that reads bodies into caller memory: framing (length, chunked, close), heads
// split across reads, interim answers, pauses, keep-alive reuse, a stale pooled connection, broken
// servers, and TLS.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { test } from 'node:test';
import { ConnectionClosedError, Http1Connection, Http1Pool, HttpProtocolError, type BodySink } from '../../src/net/http1.js';

/** A raw TCP server: `handle` gets each connection and the requests' heads as they arrive. */
async function rawServer(t: { after: (fn: () => Promise<void>) => void }, handle: (socket: Socket, head: string, n: number) => void | Promise<void>): Promise<{ url: URL; connections: () => number }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    let buf = '';
    let n = 0;
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) break;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        void handle(socket, head, n++);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    server.close(() => r());
  }));
  const port = (server.address() as { port: number }).port;
  return { url: new URL(`http://127.0.0.1:${port}/file?x=1`), connections: () => connections };
}

/** A sink over `size` bytes of memory, handing out regions of at most `step` bytes; `pauseEvery` pauses. */
function memorySink(size: number, step = 1 << 20, opts: { pauseEvery?: number; resume?: () => void } = {}): BodySink & { bytes: () => Buffer } {
  const mem = Buffer.alloc(size);
  let fill = 0;
  let calls = 0;
  return {
    region: () => mem.subarray(fill, Math.min(size, fill + step)),
    filled: (n) => {
      fill += n;
      calls++;
      if (opts.pauseEvery && calls % opts.pauseEvery === 0) {
        setTimeout(() => opts.resume?.(), 1);
        return false;
      }
      return true;
    },
    bytes: () => mem.subarray(0, fill),
  };
}

const payload = (size: number, seed = 1) => {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
};

async function writeSlowly(socket: Socket, data: Buffer, piece: number): Promise<void> {
  for (let at = 0; at < data.length; at += piece) {
    socket.write(data.subarray(at, at + piece));
    await new Promise((r) => setImmediate(r));
  }
}

test('a Content-Length body lands in the sink; the connection is reused for the next request', async (t) => {
  const body = payload(3 * 1024 * 1024 + 17);
  const seen: string[] = [];
  const srv = await rawServer(t, (s, head) => {
    seen.push(head);
    s.write(`HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\nX-Test: a\r\nx-test: b\r\n\r\n`);
    s.write(body);
  });
  const pool = new Http1Pool();
  t.after(() => pool.close());
  for (let i = 0; i < 2; i++) {
    const { response, connection } = await pool.get(srv.url, { range: 'bytes=0-', 'user-agent': 'test' });
    assert.equal(response.status, 206);
    assert.equal(response.header('Content-Length'), String(body.length));
    assert.equal(response.header('x-test'), 'a, b');
    const sink = memorySink(body.length, 100_000);
    await response.readBody(sink);
    assert.ok(sink.bytes().equals(body));
    pool.release(connection);
  }
  assert.equal(srv.connections(), 1, 'one connection, kept alive');
  assert.match(seen[0]!, /^GET \/file\?x=1 HTTP\/1\.1\r\nhost: 127\.0\.0\.1:\d+\r\nrange: bytes=0-\r\nuser-agent: test$/);
});

test('a head split into single bytes, an interim 100 answer, and a body in small pieces', async (t) => {
  const body = payload(200_000, 3);
  const srv = await rawServer(t, async (s) => {
    await writeSlowly(s, Buffer.from(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), 1);
    await writeSlowly(s, body, 7_777);
  });
  const conn = await Http1Connection.open(srv.url);
  t.after(() => conn.destroy());
  const res = await conn.request(srv.url.host, '/', {});
  assert.equal(res.status, 200);
  const sink = memorySink(body.length, 5_000);
  await res.readBody(sink);
  assert.ok(sink.bytes().equals(body));
});

test('a chunked body: sizes with extensions, lines split across reads, trailers; decoded in place', async (t) => {
  const body = payload(100_000, 5);
  const pieces: Buffer[] = [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')];
  for (let at = 0, k = 0; at < body.length; k++) {
    const n = Math.min(body.length - at, 1 + ((k * 7919) % 9000));
    pieces.push(Buffer.from(`${n.toString(16)}${k % 3 === 0 ? ';ext=1' : ''}\r\n`), body.subarray(at, at + n), Buffer.from('\r\n'));
    at += n;
  }
  pieces.push(Buffer.from('0\r\nX-Trailer: yes\r\n\r\n'));
  const wire = Buffer.concat(pieces);
  const srv = await rawServer(t, (s) => writeSlowly(s, wire, 1_013));
  const pool = new Http1Pool();
  t.after(() => pool.close());
  for (let i = 0; i < 2; i++) {
    const { response, connection } = await pool.get(srv.url, {});
    const sink = memorySink(body.length, 3_000);
    await response.readBody(sink);
    assert.ok(sink.bytes().equals(body), `round ${i}`);
    pool.release(connection);
  }
  assert.equal(srv.connections(), 1);
});

test('a close-delimited body ends with the connection; it is not reused', async (t) => {
  const body = payload(70_000, 9);
  const srv = await rawServer(t, async (s) => {
    s.write('HTTP/1.1 200 OK\r\n\r\n');
    await writeSlowly(s, body, 10_000);
    s.end();
  });
  const pool = new Http1Pool();
  t.after(() => pool.close());
  const { response, connection } = await pool.get(srv.url, {});
  const sink = memorySink(body.length + 10);
  await response.readBody(sink);
  assert.ok(sink.bytes().equals(body));
  assert.equal(connection.reusable, false);
});

test('a sink that pauses after every region still gets every byte, in order', async (t) => {
  const body = payload(2 * 1024 * 1024, 11);
  const srv = await rawServer(t, (s) => {
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
    s.write(body);
  });
  const conn = await Http1Connection.open(srv.url);
  t.after(() => conn.destroy());
  const res = await conn.request(srv.url.host, '/', {});
  const sink = memorySink(body.length, 50_000, { pauseEvery: 1, resume: () => res.resume() });
  await res.readBody(sink);
  assert.ok(sink.bytes().equals(body));
  assert.equal(conn.reusable, true);
});

test('a connection cut mid-body: ConnectionClosedError saying how much is missing', async (t) => {
  const srv = await rawServer(t, (s) => {
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n');
    s.end(payload(40_000));
  });
  const conn = await Http1Connection.open(srv.url);
  const res = await conn.request(srv.url.host, '/', {});
  const sink = memorySink(100_000);
  await assert.rejects(res.readBody(sink), (e: unknown) => e instanceof ConnectionClosedError && /60000 bytes of the body missing/.test(e.message));
  assert.equal(sink.bytes().length, 40_000, 'what arrived was handed over');
});

test('broken servers: bytes past Content-Length, a huge head, a bad status line, an unknown transfer coding, endless trailers, a bad chunk size', async (t) => {
  const cases: [string, RegExp][] = [
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA', /past the announced Content-Length|after the end of the body/],
    [`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`, /head larger than/],
    ['SPDY/3 200 OK\r\n\r\n', /not an HTTP\/1\.x status line/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', /unsupported Transfer-Encoding/],
    ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello', /two different Content-Length/],
    [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n${`X-T: ${'a'.repeat(1000)}\r\n`.repeat(80)}\r\n`, /trailers larger than/],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', /bad chunk size line/],
  ];
  for (const [wire, expected] of cases) {
    const srv = await rawServer(t, (s) => void s.write(wire));
    const conn = await Http1Connection.open(srv.url);
    const run = async () => {
      const res = await conn.request(srv.url.host, '/', {});
      await res.readBody(memorySink(100));
    };
    await assert.rejects(run(), (e: unknown) => e instanceof HttpProtocolError && expected.test(e.message), wire.slice(0, 40));
    conn.destroy();
  }
});

test('header values with line breaks are refused before anything is sent', async (t) => {
  const srv = await rawServer(t, () => assert.fail('nothing may reach the server'));
  const conn = await Http1Connection.open(srv.url);
  t.after(() => conn.destroy());
  await assert.rejects(conn.request(srv.url.host, '/', { range: 'bytes=0-\r\nx-evil: 1' }), HttpProtocolError);
});

test('a pooled connection the server closed meanwhile is replaced by a fresh one', async (t) => {
  const srv = await rawServer(t, (s, _head, n) => {
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    if (n === 0) setTimeout(() => s.destroy(), 20); // closes its idle connection, keep-alive notwithstanding
  });
  const pool = new Http1Pool();
  t.after(() => pool.close());
  const first = await pool.get(srv.url, {});
  await first.response.readBody(memorySink(2));
  pool.release(first.connection);
  await new Promise((r) => setTimeout(r, 100));
  const second = await pool.get(srv.url, {});
  const sink = memorySink(2);
  await second.response.readBody(sink);
  assert.equal(sink.bytes().toString(), 'ok');
  assert.equal(srv.connections(), 2);
});

test('an aborted signal closes the connection and rejects with its reason', async (t) => {
  const srv = await rawServer(t, (s) => void s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc'));
  const conn = await Http1Connection.open(srv.url);
  const res = await conn.request(srv.url.host, '/', {});
  const ctl = new AbortController();
  setTimeout(() => ctl.abort(new Error('stalled')), 30);
  await assert.rejects(res.readBody(memorySink(1_000_000), ctl.signal), /stalled/);
  assert.equal(conn.reusable, false);
});

test('an error body as bounded text', async (t) => {
  const srv = await rawServer(t, (s) => void s.write(`HTTP/1.1 404 Not Found\r\nContent-Length: 9000\r\n\r\n${'x'.repeat(9000)}`));
  const conn = await Http1Connection.open(srv.url);
  t.after(() => conn.destroy());
  const res = await conn.request(srv.url.host, '/', {});
  assert.equal(res.status, 404);
  assert.equal(await res.text(100), 'x'.repeat(100));
});

test('TLS: certificate checked against the CA, body read into the sink', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bake-http1-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
  const cert = await readFile(join(dir, 'cert.pem'));
  const body = payload(5 * 1024 * 1024 + 3, 13);
  const sockets = new Set<{ destroy(): void }>();
  const server = createTlsServer({ key: await readFile(join(dir, 'key.pem')), cert }, (s) => {
    sockets.add(s);
    s.once('data', () => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      s.write(body);
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    server.close(() => r());
  }));
  const url = new URL(`https://localhost:${(server.address() as { port: number }).port}/f`);
  // Untrusted certificate: refused.
  await assert.rejects(Http1Connection.open(url), /self-signed|self signed|unable to verify/i);
  const conn = await Http1Connection.open(url, undefined, { ca: [cert] });
  t.after(() => conn.destroy());
  const res = await conn.request(url.host, '/f', {});
  const sink = memorySink(body.length, 1 << 20, { pauseEvery: 3, resume: () => res.resume() });
  await res.readBody(sink);
  assert.equal(createHash('sha256').update(sink.bytes()).digest('hex'), createHash('sha256').update(body).digest('hex'));
});
