// llama-server's command-line flags, read from its `--help` text: every flag's names, whether it takes
// a value, the values it allows, and its environment variable. scripts/llama-server-flags.ts runs the
// llama-server bake builds (the llama.cpp node-llama-cpp ships) and commits the table as flags.json; a
// test fails when the committed table no longer matches that binary.

export interface ServerFlag {
  /** Every spelling, short and long, as --help lists them (`-c`, `--ctx-size`). */
  names: string[];
  /** The spellings that turn a switch off (`--no-cont-batching`, `-nocb`). */
  negations?: string[];
  /** The value placeholder (`N`, `TYPE`, `{none,mean,cls,last,rank}`); absent for a switch. */
  value?: string;
  /** True when the value may be left out (`--flash-attn [on|off|auto]`). */
  optionalValue?: boolean;
  /** The values the flag allows, when --help enumerates them. */
  values?: string[];
  /** Words besides numbers a numeric flag accepts (`'auto'`, `'all'` of --n-gpu-layers). */
  words?: string[];
  env?: string;
  /** The --help section (common, sampling, speculative, example-specific). */
  section: string;
}

const DESC_COLUMN = 40;

/** A flag spelling a switch turns off with: --no-x, -no-x, or a short -nx / -nocb form beside a positive one. */
function isNegation(name: string, all: string[]): boolean {
  if (name.startsWith('--no-') || name.startsWith('-no-')) return true;
  // Short negations (-nkvo, -nocb, -nr) come after a positive spelling with a --no- long form.
  return /^-n[a-z]+$/.test(name) && all.some((n) => n.startsWith('--no-'));
}

function parseHead(head: string): { names: string[]; value?: string } {
  const names: string[] = [];
  let value: string | undefined;
  for (const part of head.split(/,\s+/)) {
    const m = /^(-{1,2}[A-Za-z0-9][A-Za-z0-9_.-]*)(?:\s+(.+))?$/.exec(part.trim());
    if (!m) continue;
    names.push(m[1]!);
    if (m[2]) value = m[2].trim();
  }
  return { names, value };
}

export function parseServerHelp(text: string): ServerFlag[] {
  const flags: ServerFlag[] = [];
  let section = '';
  let current: { head: string; desc: string[]; section: string } | undefined;
  const finish = (): void => {
    if (!current) return;
    const { names, value } = parseHead(current.head);
    if (names.length) {
      const desc = current.desc.join(' ').replace(/\s+/g, ' ').trim();
      const flag: ServerFlag = { names: names.filter((n) => !isNegation(n, names)), section: current.section };
      const neg = names.filter((n) => isNegation(n, names));
      if (neg.length) flag.negations = neg;
      if (value) {
        let v = value;
        if (/^\[.*\]$/.test(v) && !v.includes('/')) {
          flag.optionalValue = true;
          v = v.slice(1, -1);
        }
        flag.value = value;
        const enumerated = /^\{([^{}]+)\}$/.exec(v)?.[1]?.split(',') ?? (/^<?([a-z0-9_]+(?:\|[a-z0-9_]+)+)>?$/.exec(v)?.[1]?.split('|'));
        const allowed = /allowed values: ([a-z0-9_+, ]+?)(?: \(|$)/.exec(desc)?.[1]?.split(/,\s*/);
        // Modes listed as bullets in the description (--load-mode: "- auto: ...", "- mmap+mlock: ...").
        const bullets = /^[A-Z]+$/.test(v) ? [...desc.matchAll(/(?:^| )- ([a-z0-9][a-z0-9+_-]*): /g)].map((m) => m[1]!) : [];
        const values = enumerated ?? allowed ?? (bullets.length > 1 ? bullets : undefined);
        if (values?.length) flag.values = values.map((x) => x.trim()).filter(Boolean);
        if (!flag.values && /^N\b/.test(v)) {
          const words = [...desc.matchAll(/'([a-z][a-z0-9_+-]*)'/g)].map((m) => m[1]!);
          if (words.length) flag.words = [...new Set(words)];
        }
      }
      const env = /\(env: ([A-Z0-9_]+)\)/.exec(desc)?.[1];
      if (env) flag.env = env;
      flags.push(flag);
    }
    current = undefined;
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+$/, '');
    const sec = /^----- (.+) params -----$/.exec(line);
    if (sec) {
      finish();
      section = sec[1]!;
      continue;
    }
    if (line.startsWith('-')) {
      finish();
      // A head that fits is padded to the description column; a longer one has the line to itself.
      if (line.length > DESC_COLUMN && line[DESC_COLUMN - 1] === ' ' && line[DESC_COLUMN] !== ' ') {
        current = { head: line.slice(0, DESC_COLUMN).trim(), desc: [line.slice(DESC_COLUMN)], section };
      } else {
        current = { head: line.trim(), desc: [], section };
      }
    } else if (current && line.trim()) {
      current.desc.push(line.trim());
    } else if (!line.trim()) {
      finish();
    }
  }
  finish();
  return flags;
}
