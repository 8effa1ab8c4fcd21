// Typed errors that carry what a caller needs to act; the CLI renders them, library code never prints.

import { formatBytes } from './units.js';

/** Exit codes, documented in README.md ("Exit codes"). */
export const ExitCode = {
  ok: 0,
  failure: 1, // unexpected failure (a bug, an I/O error)
  usage: 2, // bad command line, bad recipe or lock, bad model file
  integrity: 3, // a digest or size did not match
  network: 4, // the Hub or a registry could not be reached or refused
  gate: 5, // a verification gate failed
  engine: 6, // Docker engine or registry problem
  notBuilt: 7, // the command belongs to a capability not built yet
} as const;
export type ExitCodeName = keyof typeof ExitCode;

export interface BakeErrorOptions {
  /** The file the problem is in (recipe, lock, model file...). */
  file?: string;
  /** 1-based line and column inside `file`, when known. */
  line?: number;
  column?: number;
  /** Dotted path of the offending field, e.g. `models[0].quantize.format`. */
  field?: string;
  /** What was expected, in words. */
  expected?: string;
  /** How to fix it, in words. */
  hint?: string;
  cause?: unknown;
}

export class BakeError extends Error {
  readonly exit: ExitCodeName;
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;
  readonly field?: string;
  readonly expected?: string;
  readonly hint?: string;

  constructor(message: string, exit: ExitCodeName = 'failure', opts: BakeErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.exit = exit;
    this.file = opts.file;
    this.line = opts.line;
    this.column = opts.column;
    this.field = opts.field;
    this.expected = opts.expected;
    this.hint = opts.hint;
  }

  /** `file:line:col: field: message` in the shape compilers use, so editors can jump to it. */
  get location(): string | undefined {
    if (!this.file) return undefined;
    let at = this.file;
    if (this.line !== undefined) at += `:${this.line}`;
    if (this.line !== undefined && this.column !== undefined) at += `:${this.column}`;
    return at;
  }

  toJSON(): Record<string, unknown> {
    return {
      error: this.name,
      message: this.message,
      exit: ExitCode[this.exit],
      file: this.file,
      line: this.line,
      column: this.column,
      field: this.field,
      expected: this.expected,
      hint: this.hint,
    };
  }
}

/** Bad user input: recipe, lock, command line, model file. */
export class InputError extends BakeError {
  constructor(message: string, opts: BakeErrorOptions = {}) {
    super(message, 'usage', opts);
  }
}

/** Content did not match its pinned digest or size. Nothing was stored. */
export class IntegrityError extends BakeError {
  readonly path: string;
  readonly expectedDigest: string;
  readonly actualDigest: string;
  constructor(path: string, expectedDigest: string, actualDigest: string, opts: BakeErrorOptions = {}) {
    super(
      `integrity check failed for ${path}: expected ${expectedDigest}, got ${actualDigest}`,
      'integrity',
      { hint: 'the download was corrupted or the upstream file changed; run the command again, or `bake lock --update <model>` if the change is intended', ...opts, file: opts.file ?? path },
    );
    this.path = path;
    this.expectedDigest = expectedDigest;
    this.actualDigest = actualDigest;
  }
}

/** The Hub, a registry or another server refused or could not be reached. */
export class NetworkError extends BakeError {
  readonly status?: number;
  readonly url?: string;
  constructor(message: string, opts: BakeErrorOptions & { status?: number; url?: string } = {}) {
    super(message, 'network', opts);
    this.status = opts.status;
    this.url = opts.url;
  }
}

/** A verification gate failed: names the metric, its value and the threshold. */
export class GateError extends BakeError {
  readonly metric: string;
  readonly value: number;
  readonly threshold: number;
  constructor(model: string, metric: string, value: number, threshold: number, comparison: '>=' | '<=', hint?: string) {
    super(
      `verification gate failed for ${model}: ${metric} = ${value} but the recipe requires ${metric} ${comparison} ${threshold}`,
      'gate',
      { field: `verify.${metric}`, hint: hint ?? 'change the quantization (a wider type, fewer quantized ops) or relax the gate in the recipe' },
    );
    this.metric = metric;
    this.value = value;
    this.threshold = threshold;
  }
}

/** The Docker engine or a registry is missing or misbehaving. */
export class EngineError extends BakeError {
  constructor(message: string, opts: BakeErrorOptions = {}) {
    super(message, 'engine', opts);
  }
}

/**
 * The disk (or the user's quota) filled up while writing `path`: names the path, the bytes the write
 * needed and what is free there. Exit 1 (an I/O error, README "Exit codes"); nothing half-written stays.
 */
export class DiskFullError extends BakeError {
  readonly path: string;
  readonly needed?: number;
  readonly free?: number;
  constructor(path: string, needed: number | undefined, free: number | undefined, opts: BakeErrorOptions = {}) {
    const need = needed === undefined ? 'more space than is free' : `${formatBytes(needed)} (${needed} bytes)`;
    const have = free === undefined ? '' : `, ${formatBytes(free)} (${free} bytes) free there`;
    // The path is the error's `file`: the CLI prints it first, `path:`.
    super(`no space left on the device: writing this needs ${need}${have}`, 'failure', {
      hint: 'free disk space there (or raise the quota), or write elsewhere: BAKE_STORE for the store, another --out / --output',
      ...opts,
      file: opts.file ?? path,
    });
    this.path = path;
    this.needed = needed;
    this.free = free;
  }
}

/** A command that belongs to a capability not built yet. */
export class NotBuiltError extends BakeError {
  constructor(what: string) {
    super(`${what} is not built yet`, 'notBuilt');
  }
}

/**
 * The same error (same class, exit code and fields) with `rewrite` applied to its message, file,
 * expected and hint, and `prefix` (e.g. "model e5: ") put before the message unless the message already
 * names it ("model e5"). Used to report a failure on a scratch copy against the user's file. Values
 * that are not Errors pass through.
 */
export function rewriteError(err: unknown, rewrite: (text: string) => string, prefix?: string): unknown {
  if (!(err instanceof Error)) return err;
  let message = rewrite(err.message);
  if (prefix && !message.includes(prefix.replace(/:\s*$/, ''))) message = prefix + message;
  err.message = message;
  if (err instanceof BakeError) {
    const fields = err as unknown as Record<'file' | 'expected' | 'hint', string | undefined>;
    for (const key of ['file', 'expected', 'hint'] as const) {
      const value = fields[key];
      if (typeof value === 'string') fields[key] = rewrite(value);
    }
  }
  return err;
}
