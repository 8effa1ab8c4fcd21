// A BuildKit session over the engine API, so builds through dockerode can use secret mounts
// (`RUN --mount=type=secret,id=hf_token`) the way `docker build --secret` does.
//
// Protocol (moby/buildkit session/session.go, moby api/server/router/session): POST /session upgraded to
// h2c; the engine then speaks gRPC to *us* over that connection. We announce the methods we serve in
// X-Docker-Expose-Session-Grpc-Method headers. The engine health-checks the session
// (grpc.health.v1.Health/Check) and drops it when that fails, so Health must be served too.
// dockerode's own session serves Auth only and no Health: the engine drops it and any build that
// touches a secret mount fails with "no active session".
import { randomUUID } from 'node:crypto';
import { request, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { EngineError } from '../../util/errors.js';
import { parseDockerHost } from './host.js';

const PROTO = `
syntax = "proto3";
message GetSecretRequest { string ID = 1; map<string, string> annotations = 2; }
message GetSecretResponse { bytes data = 1; }
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse { int32 status = 1; }
message CredentialsRequest { string Host = 1; }
message CredentialsResponse { string Username = 1; string Secret = 2; }
`;

let root: protobuf.Root | undefined;
function type(name: string): protobuf.Type {
  root ??= protobuf.parse(PROTO, { keepCase: true }).root;
  return root.lookupType(name);
}

function unary(path: string, req: string, res: string): grpc.MethodDefinition<Record<string, unknown>, Record<string, unknown>> {
  const reqT = type(req);
  const resT = type(res);
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (v) => Buffer.from(reqT.encode(reqT.fromObject(v)).finish()),
    requestDeserialize: (b) => reqT.toObject(reqT.decode(b)) as Record<string, unknown>,
    responseSerialize: (v) => Buffer.from(resT.encode(resT.fromObject(v)).finish()),
    responseDeserialize: (b) => resT.toObject(resT.decode(b)) as Record<string, unknown>,
  };
}

const SECRETS = { GetSecret: unary('/moby.buildkit.secrets.v1.Secrets/GetSecret', 'GetSecretRequest', 'GetSecretResponse') };
const HEALTH = { Check: unary('/grpc.health.v1.Health/Check', 'HealthCheckRequest', 'HealthCheckResponse') };
const AUTH = { Credentials: unary('/moby.filesync.v1.Auth/Credentials', 'CredentialsRequest', 'CredentialsResponse') };

export interface BuildSession {
  id: string;
  close(): void;
}

/**
 * Opens a session serving `secrets` (id -> bytes). A secret the build asks for and we do not have is
 * answered NotFound, which BuildKit treats as "optional secret absent" (required=false mounts).
 */
export async function openSession(secrets: Record<string, Uint8Array> = {}, env: NodeJS.ProcessEnv = process.env): Promise<BuildSession> {
  const id = randomUUID();
  const server = new grpc.Server();
  server.addService(HEALTH, {
    Check: (_call: unknown, cb: grpc.sendUnaryData<Record<string, unknown>>) => cb(null, { status: 1 /* SERVING */ }),
  });
  server.addService(SECRETS, {
    GetSecret: (call: grpc.ServerUnaryCall<Record<string, unknown>, Record<string, unknown>>, cb: grpc.sendUnaryData<Record<string, unknown>>) => {
      const want = String(call.request.ID ?? '');
      const data = secrets[want];
      if (!data) return cb({ code: grpc.status.NOT_FOUND, details: `secret ${want} not provided` }, null);
      cb(null, { data });
    },
  });
  server.addService(AUTH, {
    // Registry credentials for base-image pulls: none (anonymous); bake pushes through its own client.
    Credentials: (_call: unknown, cb: grpc.sendUnaryData<Record<string, unknown>>) => cb(null, {}),
  });
  const methods = [HEALTH, SECRETS, AUTH].flatMap((svc) => Object.values(svc).map((m) => m.path));

  const endpoint = parseDockerHost(env);
  const target = endpoint.kind === 'unix' ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port, ...(endpoint.tls ?? {}) };
  const send = endpoint.kind === 'tcp' && endpoint.tls ? httpsRequest : request;

  const socket = await new Promise<Socket>((resolve, reject) => {
    const req: ClientRequest = send({
      ...target,
      path: '/session',
      method: 'POST',
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'h2c',
        'X-Docker-Expose-Session-Uuid': id,
        'X-Docker-Expose-Session-Name': 'bake',
        'X-Docker-Expose-Session-Sharedkey': '',
        'X-Docker-Expose-Session-Grpc-Method': methods,
      },
    });
    req.on('upgrade', (_res, sock: Socket, head: Buffer) => {
      if (head.length) sock.unshift(head);
      resolve(sock);
    });
    req.on('response', (res) => reject(new EngineError(`the engine refused a build session (HTTP ${res.statusCode})`, { hint: 'BuildKit sessions need Docker 18.09 or newer' })));
    req.on('error', (err) => reject(new EngineError(`could not open a build session: ${err.message}`, { cause: err })));
    req.end();
  });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  injector.injectConnection(socket);
  return {
    id,
    close() {
      server.forceShutdown();
      socket.destroy();
    },
  };
}
