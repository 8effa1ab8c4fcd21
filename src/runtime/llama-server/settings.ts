// A llama-server target's `server.settings` (ctx-size, batch-size, ubatch-size, cache-type-k/v,
// flash-attn, n-gpu-layers, parallel, cont-batching, cache-reuse, mlock, threads, embedding, pooling,
// or any other flag of the bundled build by its long name) as llama-server arguments, each checked
// against the flags that build accepts (flags.json): an unknown key or a value the flag does not take
// is an error naming the key, before anything is built. `server.args` are checked the same way.
import type { BakeErrorOptions } from '../../util/errors.js';
import { InputError } from '../../util/errors.js';
import { FLAGS_BUILD, flagByName, longNames, type ServerFlag } from './flags.js';

export type SettingValue = string | number | boolean;
export type LlamaServerSettings = Record<string, SettingValue>;

/** Flags the runtime app sets itself (src/runtime/serve.ts): the model file, its alias, host and port. */
const RUNTIME_OWNED: Record<string, string> = {
  '--model': 'the runtime passes the model\'s GGUF file (-m) itself',
  '--alias': 'the runtime names the model by its id (--alias)',
  '--host': 'the runtime listens on all interfaces inside the container',
  '--port': 'set server.port instead',
};

/**
 * Settings this llama-server build spells differently: `mlock: true` is `--load-mode mmap+mlock` since
 * llama.cpp folded --mlock and --no-mmap into --load-mode. Used only when the build has no flag of the name.
 */
const RENAMED: Record<string, { flag: string; value(v: SettingValue): string | undefined }> = {
  mlock: { flag: '--load-mode', value: (v) => (v === true ? 'mmap+mlock' : v === false ? undefined : String(v)) },
};

type Where = (key: string) => BakeErrorOptions;

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  }
  return d[a.length]![b.length]!;
}

/** The closest long flag names to a misspelt one. */
export function suggestFlags(name: string): string[] {
  const bare = name.replace(/^-+/, '');
  return longNames().map((n) => [n, distance(bare, n)] as const).filter(([, d]) => d <= Math.max(2, Math.floor(bare.length / 4))).sort((a, b) => a[1] - b[1]).slice(0, 3).map(([n]) => n);
}

function longName(f: ServerFlag): string {
  return f.names.find((n) => n.startsWith('--')) ?? f.names[0]!;
}

function unknown(key: string, where: BakeErrorOptions): InputError {
  const near = suggestFlags(key);
  return new InputError(`llama-server has no flag --${key.replace(/^-+/, '')}${near.length ? ` (did you mean ${near.map((n) => `--${n}`).join(', ')}?)` : ''}`, {
    ...where,
    expected: `a long flag name of the bundled llama-server (${FLAGS_BUILD}), without the dashes, e.g. ctx-size, ubatch-size, cache-type-k, flash-attn`,
    hint: near.length ? `write ${near[0]}` : 'see llama-server --help, or src/runtime/llama-server/flags.json',
  });
}

/** The value argument for `flag`, or an error saying what it takes. */
function valueArg(flag: ServerFlag, key: string, v: SettingValue, where: BakeErrorOptions): string {
  const bad = (expected: string): InputError => new InputError(`--${key} does not take ${JSON.stringify(v)}`, { ...where, expected, hint: `llama-server --help: ${longName(flag)} ${flag.value ?? ''}`.trim() });
  if (flag.values) {
    // on/off flags read YAML's true/false as on/off.
    const s = typeof v === 'boolean' && flag.values.includes('on') ? (v ? 'on' : 'off') : String(v);
    if (!flag.values.includes(s)) throw bad(`one of ${flag.values.join(', ')}`);
    return s;
  }
  if (typeof v === 'boolean') throw bad(`a value (${flag.value})`);
  if (/^N\b/.test(flag.value ?? '')) {
    const numeric = typeof v === 'number' ? Number.isFinite(v) : /^-?\d+(\.\d+)?$/.test(v);
    if (!numeric && !(flag.words ?? []).includes(String(v))) throw bad(`a number${flag.words?.length ? ` or ${flag.words.join(', ')}` : ''}`);
  }
  return String(v);
}

/** llama-server arguments for `settings`, in the order given; throws InputError naming the key. */
export function settingsArgs(settings: LlamaServerSettings, where: Where = () => ({})): string[] {
  const args: string[] = [];
  for (const [key, v] of Object.entries(settings)) {
    const at = where(key);
    if (key.startsWith('-')) {
      throw new InputError(`settings key ${key}: name the flag without its dashes`, { ...at, expected: key.replace(/^-+/, ''), hint: `write ${key.replace(/^-+/, '')}: <value>` });
    }
    let flag = flagByName(`--${key}`);
    // Written as the recipe spells it (--n-gpu-layers and --gpu-layers are one flag).
    let spelling = `--${key}`;
    let value = v;
    if (!flag && RENAMED[key] && flagByName(RENAMED[key].flag)) {
      const r = RENAMED[key];
      const mapped = r.value(v);
      if (mapped === undefined) continue;
      flag = flagByName(r.flag)!;
      spelling = r.flag;
      value = mapped;
    }
    if (!flag) throw unknown(key, at);
    const owned = RUNTIME_OWNED[longName(flag)];
    if (owned) throw new InputError(`--${key} is set by bake's runtime: ${owned}`, { ...at, hint: `remove ${key} from the settings` });
    if (!flag.value) {
      // A switch: true turns it on; false turns it off by its --no- spelling (or leaves it off).
      if (typeof value !== 'boolean') throw new InputError(`--${key} is a switch and takes true or false, not ${JSON.stringify(value)}`, { ...at, expected: 'true or false' });
      const negative = flagByName(`--${key}`)?.negations?.includes(`--${key}`) ?? false;
      const on = negative ? !value : value;
      if (on) args.push(negative ? longName(flag) : spelling);
      else {
        const off = flag.negations?.find((n) => n.startsWith('--'));
        if (off) args.push(off);
      }
      continue;
    }
    args.push(spelling, valueArg(flag, key, value, at));
  }
  return args;
}

/**
 * Checks extra server arguments (`server.args`): every flag must be one the build knows and not one the
 * runtime sets; values are not interpreted (they pass through as written).
 */
export function checkServerArgs(args: readonly string[], where: (index: number) => BakeErrorOptions = () => ({})): void {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('-') || /^-\d/.test(a)) continue;
    const name = a.includes('=') ? a.slice(0, a.indexOf('=')) : a;
    const flag = flagByName(name);
    if (!flag) throw unknown(name, where(i));
    const owned = RUNTIME_OWNED[longName(flag)];
    if (owned) throw new InputError(`${name} is set by bake's runtime: ${owned}`, { ...where(i), hint: `remove ${name} from server.args` });
    // A value flag takes the next argument (a switch or an optional value does not).
    if (flag.value && !flag.optionalValue && !a.includes('=') && !(flag.negations ?? []).includes(name)) i++;
  }
}
