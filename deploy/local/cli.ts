/**
 * `npx taskmesh …`: the local runtime's command line. Run through
 * scripts/taskmesh.mjs, which puts it on the pinned Node 24.
 */
import { Command, Option } from "commander";
import { configGet, configPut, configWatch } from "./commands/config.js";
import { health, logs, status } from "./commands/inspect.js";
import { down, parseReplicas, up } from "./commands/up.js";

const program = new Command("taskmesh")
  .description("taskmesh: agent tasks on a fleet of workers, as a gRPC service mesh")
  .showHelpAfterError();

/** Runs a command and exits with its code; errors become one line on stderr. */
function action<A extends unknown[]>(run: (...args: A) => Promise<number> | number) {
  return async (...args: A): Promise<void> => {
    try {
      process.exitCode = await run(...args);
    } catch (error) {
      console.error(`taskmesh: ${(error as Error).message}`);
      process.exitCode = 1;
    }
  };
}

program.command("up")
  .description("start Postgres, the services and everything they need; wait until all are healthy")
  .option("-d, --detach", "run in the background and return once ready")
  .addOption(new Option("--replicas <list>", "replicas per service, e.g. config=2").argParser(parseReplicas))
  .action(action((opts: { detach?: boolean; replicas?: Record<string, number> }) => up(opts)));

program.command("down").description("stop everything, in reverse order").action(action(() => down()));

program.command("status")
  .description("every process of the run: pid, state, addresses")
  .option("--json", "print JSON for scripts")
  .action(action((opts: { json?: boolean }) => status(opts.json ?? false)));

program.command("logs")
  .description("print a process's log (.taskmesh/logs/<process>.log)")
  .argument("<process>", "e.g. postgres, config-0, taskmesh")
  .option("-f, --follow", "keep printing as it grows")
  .action(action((name: string, opts: { follow?: boolean }) => logs(name, opts.follow ?? false)));

program.command("health")
  .description("gRPC health of every service instance")
  .option("--json", "print JSON for scripts")
  .action(action((opts: { json?: boolean }) => health(opts.json ?? false)));

const config = program.command("config").description("read, write and watch live configuration");
const address = new Option("--address <host:port>", "a config instance (default: the running one)");
config.command("get").argument("<key>").addOption(address).option("--json", "print JSON")
  .action(action((key: string, opts: { address?: string; json?: boolean }) => configGet(key, opts)));
config.command("put").argument("<key>").argument("<value>", "JSON, or plain text for a string")
  .addOption(address).option("--expect-revision <n>", "compare-and-swap: only if the key is at this revision (0: absent)")
  .action(action((key: string, value: string, opts: { address?: string; expectRevision?: string }) => configPut(key, value, opts)));
config.command("watch").argument("[prefix]", "keys starting with it", "/").addOption(address)
  .option("--after-revision <n>", "replay every change after this revision first")
  .action(action((prefix: string, opts: { address?: string; afterRevision?: string }) => configWatch(prefix, opts)));

await program.parseAsync();
