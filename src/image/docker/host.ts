// Where the Docker engine is, read as docker's own client reads it: DOCKER_HOST (unix://, tcp://,
// npipe://), DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem), else the default
// socket. The one parser; the API client and the build session both connect through it.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../util/errors.js';

export type EngineEndpoint =
  | { kind: 'unix'; socketPath: string; address: string }
  | { kind: 'tcp'; host: string; port: number; address: string; tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer } };

export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';

/** The address as the user gave it (for messages). */
export function engineAddress(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_HOST || DEFAULT_DOCKER_HOST;
}

function tlsFiles(env: NodeJS.ProcessEnv): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const dir = env.DOCKER_CERT_PATH || join(homedir(), '.docker');
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name));
    } catch {
      return undefined;
    }
  };
  return { ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem') };
}

export function parseDockerHost(env: NodeJS.ProcessEnv = process.env): EngineEndpoint {
  const address = engineAddress(env);
  const bad = () =>
    new InputError(`DOCKER_HOST has an address bake cannot use: ${address}`, {
      field: 'DOCKER_HOST',
      expected: 'unix:///path/to/docker.sock, tcp://host:port (TLS with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH), or npipe://',
    });
  if (address.startsWith('unix://')) {
    const socketPath = address.slice('unix://'.length);
    if (!socketPath.startsWith('/')) throw bad();
    return { kind: 'unix', socketPath, address };
  }
  if (address.startsWith('npipe://')) return { kind: 'unix', socketPath: address.slice('npipe://'.length), address };
  if (/^(tcp|http|https):\/\//.test(address)) {
    let url: URL;
    try {
      url = new URL(address.replace(/^tcp:/, 'http:'));
    } catch {
      throw bad();
    }
    // docker: TLS when DOCKER_TLS_VERIFY is set (to anything non-empty) or the scheme is https.
    const tls = address.startsWith('https:') || Boolean(env.DOCKER_TLS_VERIFY);
    const port = Number(url.port || (tls ? 2376 : 2375));
    const host = url.hostname.replace(/^\[|\]$/g, '');
    return tls ? { kind: 'tcp', host, port, address, tls: tlsFiles(env) } : { kind: 'tcp', host, port, address };
  }
  throw bad();
}
