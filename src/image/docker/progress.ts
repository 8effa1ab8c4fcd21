// Decodes the Docker build stream into typed events. With BuildKit (version '2') the engine sends its
// solve status as `{"id":"moby.buildkit.trace","aux":"<base64 StatusResponse protobuf>"}` lines; the
// message shapes below are moby/buildkit api/services/control/control.proto (fields we use only).
import protobuf from 'protobufjs';

const CONTROL_PROTO = `
syntax = "proto3";
package moby.buildkit.v1;
message Timestamp { int64 seconds = 1; int32 nanos = 2; }
message StatusResponse {
  repeated Vertex vertexes = 1;
  repeated VertexStatus statuses = 2;
  repeated VertexLog logs = 3;
}
message Vertex {
  string digest = 1;
  repeated string inputs = 2;
  string name = 3;
  bool cached = 4;
  Timestamp started = 5;
  Timestamp completed = 6;
  string error = 7;
}
message VertexStatus {
  string ID = 1;
  string vertex = 2;
  string name = 3;
  int64 current = 4;
  int64 total = 5;
  Timestamp timestamp = 6;
  Timestamp started = 7;
  Timestamp completed = 8;
}
message VertexLog {
  string vertex = 1;
  Timestamp timestamp = 2;
  int64 stream = 3;
  bytes msg = 4;
}
`;

let statusType: protobuf.Type | undefined;
function statusResponse(): protobuf.Type {
  statusType ??= protobuf.parse(CONTROL_PROTO, { keepCase: true }).root.lookupType('moby.buildkit.v1.StatusResponse');
  return statusType;
}

/** One build step ("vertex"): `[model-a 3/4] RUN bake-materialize ...`. */
export interface BuildStep {
  digest: string;
  name: string;
  cached: boolean;
  started?: Date;
  completed?: Date;
  error?: string;
}

export type BuildEvent =
  /** A step was seen, started, finished (completed set), or was taken from the cache. */
  | { type: 'step'; step: BuildStep }
  /** Byte or item progress inside a step (context transfer, layer export). */
  | { type: 'progress'; step: string; id: string; current: number; total?: number }
  /** Output of a RUN command, as the engine sent it (a chunk, not always a whole line). */
  | { type: 'log'; step: string; stream: 'stdout' | 'stderr'; text: string }
  /** A legacy (non-BuildKit) stream line or a note from the engine. */
  | { type: 'message'; text: string }
  | { type: 'image'; imageId: string };

interface RawTimestamp {
  seconds?: number | { toNumber(): number };
  nanos?: number;
}

function toDate(t: RawTimestamp | undefined | null): Date | undefined {
  if (!t) return undefined;
  const s = typeof t.seconds === 'object' && t.seconds ? t.seconds.toNumber() : Number(t.seconds ?? 0);
  // Go's zero time (year 1) means "not set".
  if (s <= 0) return undefined;
  return new Date(s * 1000 + Math.floor((t.nanos ?? 0) / 1e6));
}

function num(v: unknown): number {
  if (v && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return Number(v ?? 0);
}

/** Decodes one base64 `moby.buildkit.trace` payload into events. Bad payloads give no events. */
export function decodeTrace(base64: string): BuildEvent[] {
  let msg: Record<string, unknown>;
  try {
    msg = statusResponse().toObject(statusResponse().decode(Buffer.from(base64, 'base64')), { defaults: false }) as Record<string, unknown>;
  } catch {
    return [];
  }
  const names = new Map<string, string>();
  const out: BuildEvent[] = [];
  for (const v of (msg.vertexes ?? []) as Record<string, unknown>[]) {
    const step: BuildStep = {
      digest: String(v.digest ?? ''),
      name: String(v.name ?? ''),
      cached: Boolean(v.cached),
      started: toDate(v.started as RawTimestamp),
      completed: toDate(v.completed as RawTimestamp),
      error: v.error ? String(v.error) : undefined,
    };
    names.set(step.digest, step.name);
    out.push({ type: 'step', step });
  }
  for (const s of (msg.statuses ?? []) as Record<string, unknown>[]) {
    const total = num(s.total);
    out.push({ type: 'progress', step: String(s.vertex ?? ''), id: String(s.ID ?? ''), current: num(s.current), total: total > 0 ? total : undefined });
  }
  for (const l of (msg.logs ?? []) as Record<string, unknown>[]) {
    const bytes = l.msg instanceof Uint8Array ? l.msg : Buffer.alloc(0);
    out.push({ type: 'log', step: String(l.vertex ?? ''), stream: num(l.stream) === 2 ? 'stderr' : 'stdout', text: Buffer.from(bytes).toString('utf8') });
  }
  return out;
}

/** What one JSON line of the build stream means: events, or the error the engine reported. */
export function decodeStreamLine(line: Record<string, unknown>): { events: BuildEvent[]; error?: string } {
  if (typeof line.error === 'string' || line.errorDetail) {
    const detail = line.errorDetail as { message?: string } | undefined;
    return { events: [], error: String(line.error ?? detail?.message ?? 'build failed') };
  }
  if (line.id === 'moby.buildkit.trace' && typeof line.aux === 'string') return { events: decodeTrace(line.aux) };
  if (line.id === 'moby.image.id' && line.aux && typeof line.aux === 'object') {
    const id = (line.aux as { ID?: string }).ID;
    return { events: id ? [{ type: 'image', imageId: id }] : [] };
  }
  if (line.aux && typeof line.aux === 'object' && typeof (line.aux as { ID?: string }).ID === 'string') {
    return { events: [{ type: 'image', imageId: (line.aux as { ID: string }).ID }] };
  }
  if (typeof line.stream === 'string' && line.stream.trim()) return { events: [{ type: 'message', text: line.stream }] };
  return { events: [] };
}
