// DOCKER_HOST as docker's own client reads it (one parser for the API client and the build session), and
// loopback registries (plain HTTP, as Docker assumes for them): IPv4, localhost and [::1].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDockerHost } from '../../../src/image/docker/host.js';
import { isLoopbackHost } from '../../../src/image/registry/ref.js';
import { RegistryClient } from '../../../src/image/registry/client.js';
import { InputError } from '../../../src/util/errors.js';

test('DOCKER_HOST: unix sockets, tcp with and without TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), the default, bad values', async () => {
  assert.deepEqual(parseDockerHost({}), { kind: 'unix', socketPath: '/var/run/docker.sock', address: 'unix:///var/run/docker.sock' });
  assert.deepEqual(parseDockerHost({ DOCKER_HOST: 'unix:///run/x.sock' }), { kind: 'unix', socketPath: '/run/x.sock', address: 'unix:///run/x.sock' });
  assert.deepEqual(parseDockerHost({ DOCKER_HOST: 'tcp://10.0.0.5' }), { kind: 'tcp', host: '10.0.0.5', port: 2375, address: 'tcp://10.0.0.5' });
  assert.deepEqual(parseDockerHost({ DOCKER_HOST: 'tcp://[::1]:2380' }), { kind: 'tcp', host: '::1', port: 2380, address: 'tcp://[::1]:2380' });
  const certs = await mkdtemp(join(tmpdir(), 'bake-certs-'));
  for (const f of ['ca.pem', 'cert.pem', 'key.pem']) await writeFile(join(certs, f), `${f} bytes`);
  const tls = parseDockerHost({ DOCKER_HOST: 'tcp://docker.example.com', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs });
  assert.ok(tls.kind === 'tcp' && tls.tls);
  assert.equal(tls.port, 2376, 'TLS uses 2376 by default');
  assert.equal(tls.tls.ca?.toString(), 'ca.pem bytes');
  assert.equal(tls.tls.cert?.toString(), 'cert.pem bytes');
  assert.equal(tls.tls.key?.toString(), 'key.pem bytes');
  for (const bad of ['ssh://me@host', 'unix://relative.sock', 'tcp://']) {
    assert.throws(() => parseDockerHost({ DOCKER_HOST: bad }), (e: unknown) => e instanceof InputError && e.field === 'DOCKER_HOST', bad);
  }
});

test('loopback registries are spoken to over plain HTTP: 127.0.0.0/8, localhost and [::1]; others over HTTPS', () => {
  for (const h of ['127.0.0.1:5000', '127.1.2.3', 'localhost:5000', 'localhost', '[::1]:5000', '[::1]']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['registry.example.com', '10.0.0.1:5000', 'localhost.example.com', '[::2]:5000', '128.0.0.1']) assert.equal(isLoopbackHost(h), false, h);
  assert.match(new RegistryClient('[::1]:5000').baseUrl, /^http:\/\/\[::1\]:5000$/);
  assert.match(new RegistryClient('registry.example.com').baseUrl, /^https:\/\//);
});
