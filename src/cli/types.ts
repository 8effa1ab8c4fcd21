// What a subcommand is to the CLI wiring (main.ts): its parsed input and its declaration.
import type { ExitCodeName } from '../util/errors.js';
import type { Renderer } from './render.js';

export interface RunInput {
  args: string[];
  opts: Record<string, unknown>;
  globals: { json?: boolean; store?: string; project: string; quiet?: boolean };
  render: Renderer;
}

export interface CommandDef {
  name: string;
  description: string;
  args?: { name: string; description: string; required?: boolean }[];
  options?: { flags: string; description: string; default?: unknown; choices?: string[]; env?: string }[];
  examples?: string[];
  /** The result as a value (printed as JSON with --json) and as text; `exit` names a non-zero code for a result that is a failure (doctor). */
  run(input: RunInput): Promise<{ value: unknown; text: string; exit?: ExitCodeName }>;
}
