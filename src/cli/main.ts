// The `bake` command: commander wiring only. Parse, build a pipeline context, call, render.
import { Command, Option } from 'commander';
import { ExitCode } from '../util/errors.js';
import { commands } from './commands.js';
import { makeRenderer } from './render.js';

const EXAMPLES = `
Examples:
  bake lock rag-service                 pin every model of recipes/rag-service.yaml in models.lock
  bake lock rag-service --update e5     re-resolve one model (e.g. after changing its revision)
  bake pull rag-service                 download the locked files into the Hugging Face cache
  bake plan rag-service                 what would run and why, from the cache state
  bake verify rag-service --json        quantize and verify; machine-readable report
  bake build demo --output oci:out/demo daemonless OCI image layout, no Docker engine needed
  bake build rag-service --target cpu   docker build through the engine (DOCKER_HOST)
  bake push rag-service --to 127.0.0.1:5000/ml/rag-service

Environment:
  HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE=1   as in huggingface_hub
  BAKE_STORE            artifact store and step cache (default ~/.cache/bake)
  SOURCE_DATE_EPOCH     timestamp for reproducible layers and images (default 0)
  DOCKER_HOST           Docker engine for \`bake build\` without --output

Exit codes:
  0 ok, 1 unexpected failure, 2 bad input (command line, recipe, lock, model file),
  3 integrity (digest or size mismatch), 4 network (Hub or registry), 5 verification gate failed,
  6 Docker engine or registry problem, 7 not built yet
`;

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('bake')
    .description('Turn a model recipe into verified, quantized models baked into container images.')
    .version('0.1.0')
    .addOption(new Option('--json', 'machine-readable output: JSON result on stdout, JSON events on stderr'))
    .addOption(new Option('--store <dir>', 'artifact store and step cache').env('BAKE_STORE'))
    .addOption(new Option('-C, --project <dir>', 'project root holding recipes/ and models.lock').default(process.cwd()))
    .addOption(new Option('-q, --quiet', 'only the result and errors'))
    .addHelpText('after', EXAMPLES)
    .showHelpAfterError('(run `bake --help` for usage)')
    .exitOverride();

  for (const def of commands) {
    const cmd = program.command(def.name).description(def.description);
    for (const a of def.args ?? []) cmd.argument(a.required ? `<${a.name}>` : `[${a.name}]`, a.description);
    for (const o of def.options ?? []) {
      const opt = new Option(o.flags, o.description);
      if (o.default !== undefined) opt.default(o.default);
      if (o.choices) opt.choices(o.choices);
      if (o.env) opt.env(o.env);
      cmd.addOption(opt);
    }
    if (def.examples) cmd.addHelpText('after', `\nExamples:\n${def.examples.map((e) => `  ${e}`).join('\n')}\n`);
    cmd.action(async (...args: unknown[]) => {
      const command = args[args.length - 1] as Command;
      const globals = program.opts<{ json?: boolean; store?: string; project: string; quiet?: boolean }>();
      const render = makeRenderer({ json: Boolean(globals.json), quiet: globals.quiet });
      try {
        const positional = args.slice(0, def.args?.length ?? 0) as string[];
        const { value, text, exit } = await def.run({ args: positional, opts: command.opts(), globals, render });
        render.result(value, text);
        process.exitCode = ExitCode[exit ?? 'ok'];
      } catch (err) {
        process.exitCode = render.error(err);
      }
    });
  }
  return program;
}

async function main(): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') process.exitCode = 0;
    else process.exitCode = e.exitCode === undefined ? 1 : 2;
  }
}

await main();
