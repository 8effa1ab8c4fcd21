// Turns pipeline events and errors into what a person or a CI log sees.
// TTY: progress bars for downloads; otherwise plain lines; --json: one JSON object per line on stderr
// for events and one JSON result on stdout.
import cliProgress from 'cli-progress';
import { BakeError, ExitCode } from '../util/errors.js';
import type { PipelineEvent } from '../pipeline/events.js';

export interface Renderer {
  event(e: PipelineEvent): void;
  info(line: string): void;
  result(value: unknown, text: string): void;
  error(err: unknown): number;
  close(): void;
}

export function makeRenderer(opts: { json: boolean; quiet?: boolean; stream?: NodeJS.WriteStream }): Renderer {
  const err = opts.stream ?? process.stderr;
  const tty = !opts.json && Boolean(err.isTTY) && !process.env.CI;
  let bars: cliProgress.MultiBar | undefined;
  const barOf = new Map<string, cliProgress.SingleBar>();
  const lastPlain = new Map<string, number>();

  const line = (s: string) => {
    if (opts.quiet) return;
    if (bars) bars.log(s + '\n');
    else err.write(s + '\n');
  };

  return {
    event(e) {
      if (opts.json) {
        err.write(JSON.stringify(e) + '\n');
        return;
      }
      const who = e.model ? `${e.model}: ` : '';
      if (e.type === 'step') {
        if (e.status === 'cached') line(`${who}${e.step} cached (${e.key?.slice(0, 12)})`);
        else if (e.status === 'running') line(`${who}${e.step} ...`);
        else line(`${who}${e.step} done in ${((e.ms ?? 0) / 1000).toFixed(1)} s -> ${e.artifact?.slice(0, 12)}`);
      } else if (e.type === 'log') {
        // Warnings are shown even with --quiet: they say a result is weaker than it looks.
        if (e.level === 'warning') {
          if (bars) bars.log(`warning: ${who}${e.message}\n`);
          else err.write(`warning: ${who}${e.message}\n`);
        } else line(`${who}${e.message}`);
      } else if (e.type === 'progress') {
        const id = `${e.model}/${e.label}`;
        if (tty) {
          bars ??= new cliProgress.MultiBar(
            { format: ' {bar} {percentage}% | {label} | {value}/{total} B', hideCursor: true, clearOnComplete: false, stream: err },
            cliProgress.Presets.shades_classic,
          );
          let bar = barOf.get(id);
          if (!bar) {
            bar = bars.create(e.total ?? 0, 0, { label: `${who}${e.label}` });
            barOf.set(id, bar);
          }
          if (e.total !== undefined) bar.setTotal(e.total);
          bar.update(e.bytes);
        } else {
          // Plain output: one line per 25 % so CI logs stay short.
          const pct = e.total ? Math.floor((e.bytes / e.total) * 4) : 0;
          if (lastPlain.get(id) !== pct) {
            lastPlain.set(id, pct);
            line(`${who}${e.label} ${e.bytes}${e.total ? `/${e.total}` : ''} bytes`);
          }
        }
      }
    },
    info(s) {
      line(s);
    },
    result(value, text) {
      this.close();
      if (opts.json) process.stdout.write(JSON.stringify(value, null, 2) + '\n');
      else if (text) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
    },
    error(e) {
      this.close();
      if (e instanceof BakeError) {
        if (opts.json) {
          process.stdout.write(JSON.stringify(e.toJSON(), null, 2) + '\n');
        } else {
          // A message that already names its file is not prefixed with it again.
          const named = e.line === undefined && e.file !== undefined && e.message.includes(e.file);
          const at = e.location && !named ? `${e.location}: ` : '';
          err.write(`error: ${at}${e.message}\n`);
          if (e.expected) err.write(`  expected: ${e.expected}\n`);
          if (e.hint) err.write(`  fix: ${e.hint}\n`);
        }
        return ExitCode[e.exit];
      }
      const msg = e instanceof Error ? (process.env.BAKE_DEBUG ? e.stack ?? e.message : e.message) : String(e);
      if (opts.json) process.stdout.write(JSON.stringify({ error: 'Error', message: msg, exit: ExitCode.failure }) + '\n');
      else err.write(`error: ${msg}\n  (set BAKE_DEBUG=1 for a stack trace)\n`);
      return ExitCode.failure;
    },
    close() {
      bars?.stop();
      bars = undefined;
    },
  };
}
