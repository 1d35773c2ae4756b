/**
 * `npx taskmesh …`: the local runtime's command line. Run through
 * scripts/taskmesh.mjs, which puts it on the pinned Node 24.
 */
import { Command, Option, type CommanderError } from "commander";
import type { CertsOptions } from "./commands/certs.js";
import type { TailOptions } from "./commands/events.js";
import { parseReplicas } from "./commands/replicas.js";
import type { ListOptions, SubmitOptions, WatchOptions } from "./commands/task-args.js";
import type { TokenOptions } from "./commands/token.js";
import { UsageError } from "@taskmesh/local/usage-error";

// Each command's module is loaded when that command runs, so `--help` and
// `status` do not load gRPC, the generated code or the supervisor.
const commands = {
  certs: () => import("./commands/certs.js"),
  config: () => import("./commands/config.js"),
  db: () => import("./commands/db.js"),
  events: () => import("./commands/events.js"),
  grpcurl: () => import("./commands/grpcurl.js"),
  inspect: () => import("./commands/inspect.js"),
  open: () => import("./commands/open.js"),
  restart: () => import("./commands/restart.js"),
  scale: () => import("./commands/scale.js"),
  task: () => import("./commands/task.js"),
  token: () => import("./commands/token.js"),
  up: () => import("./commands/up.js"),
  worker: () => import("./commands/worker.js"),
  workflow: () => import("./commands/workflow.js"),
};

const program = new Command("taskmesh")
  .description("taskmesh: agent tasks on a fleet of workers, as a gRPC service mesh")
  .showHelpAfterError();

/** Runs a command and exits with its code; errors become one line on stderr (exit 2 for bad input, else 1). */
function action<A extends unknown[]>(run: (...args: A) => Promise<number> | number) {
  return async (...args: A): Promise<void> => {
    try {
      process.exitCode = await run(...args);
    } catch (error) {
      console.error(`taskmesh: ${(error as Error).message}`);
      process.exitCode = error instanceof UsageError ? 2 : 1;
    }
  };
}

/** Commander's own usage errors (a missing argument, an unknown option) exit 2, like a command's input checks; help exits 0. */
function usageExit(error: CommanderError): never {
  process.exit(error.exitCode === 0 ? 0 : 2);
}

/** Collects a repeatable option's values. */
function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

program.command("up")
  .description("start Postgres, the services and everything they need; wait until all are healthy")
  .option("-d, --detach", "run in the background and return once ready")
  .addOption(new Option("--replicas <list>", "replicas per service, e.g. config=2").argParser(parseReplicas))
  .option("--autoscale <service=min..max>", "size a service nothing calls from the queue, e.g. worker=1..6 (TASKMESH_AUTOSCALE_TARGET tasks in flight per replica, default 8)")
  .option("--agents <path>", "an agent module (defineAgent from @taskmesh/worker, or a worker.py), or a folder of them: each runs on a worker of its own, as taskmesh worker runs it; repeatable", collect)
  .exitOverride(usageExit)
  .action(action(async (opts: { detach?: boolean; replicas?: Record<string, number>; autoscale?: string; agents?: string[] }) => (await commands.up()).up(opts)));

program.command("down").description("stop everything, in reverse order").action(action(async () => (await commands.up()).down()));

program.command("status")
  .description("every process of the run: pid, state, addresses")
  .option("--json", "print JSON for scripts")
  .option("--address <process>", "print only that process's address, for scripts (e.g. CONFIG=$(npx taskmesh status --address config-0))")
  .action(action(async (opts: { json?: boolean; address?: string }) => (await commands.inspect()).status(opts.json ?? false, opts.address)));

program.command("logs")
  .description("print a process's log (.taskmesh/logs/<process>.log), or the last lines of every process's log when none is named; with --trace only one trace's lines")
  .argument("[process]", "e.g. postgres, config-0, taskmesh (default: every process, each line prefixed with its process)")
  .option("-f, --follow", "keep printing as it grows")
  .option("--trace <trace-id>", "only lines with this trace id (32 hex digits, or a traceparent)")
  .action(action(async (name: string | undefined, opts: { follow?: boolean; trace?: string }) => (await commands.inspect()).logs(name, opts.follow ?? false, opts.trace)));

program.command("restart")
  .description("stop one process of the running system and wait until the supervisor has it running again (a new pid)")
  .argument("<process>", "e.g. worker-0, coordinator-0, coordinator-0-sidecar, kafka (npx taskmesh status lists them)")
  .exitOverride(usageExit)
  .action(action(async (name: string) => (await commands.restart()).restart(name)));

program.command("scale")
  .description("run N replicas of a service nothing calls (worker) in the running system: new ones join with their sidecars, removed ones drain first")
  .argument("<service=replicas>", "e.g. worker=4")
  .exitOverride(usageExit)
  .action(action(async (arg: string) => (await commands.scale()).scale(arg)));

program.command("worker")
  .description("run the agents a module exports (defineAgent from @taskmesh/worker) on a new worker of the running system; its log follows until Ctrl-C, which stops it")
  .argument("<module>", "e.g. ./my-agents.ts (its default export: an agent, or a list of agents), or a worker.py speaking the worker protocol; with --stop, a worker's name")
  .option("-d, --detach", "return once the worker has connected, leaving it running")
  .option("--stop", "stop the worker named (one started with -d)")
  .option("-w, --watch", "start the worker again whenever the module's file changes (in the foreground)")
  .exitOverride(usageExit)
  .action(action(async (target: string, opts: { detach?: boolean; stop?: boolean; watch?: boolean }) => (await commands.worker()).worker(target, opts)));

program.command("open")
  .description("print the address of a page of the running system (ui: the console, docs: the API docs, jaeger: the Jaeger UI, admin: the edge's admin page); --browser opens it")
  .argument("<page>", "ui, docs, jaeger or admin")
  .option("--browser", "also open it in the desktop's browser")
  .exitOverride(usageExit)
  .action(action(async (page: string, opts: { browser?: boolean }) => (await commands.open()).open(page, opts)));

program.command("health")
  .description("gRPC health of every service instance")
  .option("--json", "print JSON for scripts")
  .action(action(async (opts: { json?: boolean }) => (await commands.inspect()).health(opts.json ?? false)));

const certsCommand = program.command("certs")
  .description("create the mesh CA and each identity's key pair (.taskmesh/certs/) where missing or ending within the hour; list them")
  .option("--json", "print JSON for scripts")
  .option("--validity <duration>", "how long new identity certificates are valid (default 24h)")
  .action(action(async (opts: CertsOptions) => (await commands.certs()).certs(opts)));
certsCommand.command("rotate")
  .description("new key pairs under the same CA for all or the named identities; Envoy picks them up through SDS without a restart")
  .argument("[name...]", "config, ledger, coordinator, worker, edge (default: all)")
  .option("--json", "print JSON for scripts")
  .option("--validity <duration>", "how long the new certificates are valid (default 24h)")
  // The parent's --json and --validity are recognised after `rotate` too, so both commands' options are merged.
  .action(action(async (names: string[], _opts: CertsOptions, command: Command) => (await commands.certs()).certsRotate(names, command.optsWithGlobals<CertsOptions>())));

const config = program.command("config").description("read, write and watch live configuration");
const address = new Option("--address <host:port>", "a config instance (default: the running one)");
config.command("get").argument("<key>").addOption(address).option("--json", "print JSON")
  .action(action(async (key: string, opts: { address?: string; json?: boolean }) => (await commands.config()).configGet(key, opts)));
config.command("put").argument("<key>").argument("<value>", "JSON, or plain text for a string")
  .addOption(address).option("--expect-revision <n>", "compare-and-swap: only if the key is at this revision (0: absent)")
  .action(action(async (key: string, value: string, opts: { address?: string; expectRevision?: string }) => (await commands.config()).configPut(key, value, opts)));
config.command("watch").argument("[prefix]", "keys starting with it", "/").addOption(address)
  .option("--after-revision <n>", "replay every change after this revision first")
  .action(action(async (prefix: string, opts: { address?: string; afterRevision?: string }) => (await commands.config()).configWatch(prefix, opts)));

const task = program.command("task").description("submit, read, list, watch and cancel tasks").exitOverride(usageExit);
const coordinator = new Option("--address <host:port>", "a coordinator instance (default: TASKMESH_UPSTREAM_COORDINATOR, else the running one)");
const json = ["--json", "print the response as proto3 JSON"] as const;
task.command("submit").description("submit a task and print its id")
  .argument("<capability>", "e.g. echo, sleep, hash, fail, flaky").argument("[input-json]", "the input, a JSON object (default {})")
  .option("--key <key>", "idempotency key: a repeat returns the first task (deduplicated)")
  .option("--max-attempts <n>", "the most attempts, 1..100 (default 3)")
  .option("--timeout <duration>", "how long one attempt may run, e.g. 30s (default 5m)")
  .option("--priority <p>", "0 (default, lowest) .. 9 (highest)")
  .option("--label <key=value>", "a label; repeat for more", collect)
  .option("--wait", "follow it until it ends and print it; exit 0 only if it SUCCEEDED")
  .option(...json).addOption(coordinator)
  .action(action(async (capability: string, input: string | undefined, opts: SubmitOptions) => (await commands.task()).taskSubmit(capability, input, opts)));
task.command("get").description("show one task").argument("<id>").option(...json).addOption(coordinator)
  .action(action(async (id: string, opts: { json?: boolean; address?: string }) => (await commands.task()).taskGet(id, opts)));
task.command("list").description("list tasks, newest first, a page at a time")
  .option("--state <state>", "only in this state (waiting, pending, running, succeeded, failed, cancelled, timed_out); repeat for more", collect)
  .option("--capability <name>", "only of this capability")
  .option("--workflow <id>", "only the tasks of this workflow")
  .option("--parent <id>", "only the child tasks of this task")
  .option("--since <duration>", "only created in the last <duration>, e.g. 10m")
  .option("--after <time>", "only created at or after this ISO 8601 time")
  .option("--limit <n>", "at most this many (default 100)")
  .option("--page-token <token>", "the next page, as the previous page printed")
  .option(...json).addOption(coordinator)
  .action(action(async (opts: ListOptions) => (await commands.task()).taskList(opts)));
task.command("watch").description("print a task's changes until it ends; exit 0 only if it SUCCEEDED").argument("<id>")
  .option("--after-sequence <n>", "replay the transitions after this sequence first")
  .option("--json", "print each message as one line of proto3 JSON").addOption(coordinator)
  .action(action(async (id: string, opts: WatchOptions) => (await commands.task()).taskWatch(id, opts)));
task.command("cancel").description("cancel a pending or running task").argument("<id>")
  .option("--reason <text>", "why, for the task's history").option(...json).addOption(coordinator)
  .action(action(async (id: string, opts: { reason?: string; json?: boolean; address?: string }) => (await commands.task()).taskCancel(id, opts)));

const workflow = program.command("workflow").description("submit, read and cancel workflows: named tasks with dependencies").exitOverride(usageExit);
workflow.command("submit").description("submit a workflow (SubmitWorkflow's JSON, as POST /v1/workflows takes it) and print its id")
  .argument("<file>", "a JSON file, or - for standard input: {\"tasks\":[{\"name\":\"a\",\"task\":{\"capability\":\"echo\"}},{\"name\":\"b\",\"dependsOn\":[\"a\"],\"task\":{...}}]}")
  .option("--key <key>", "idempotency key: a repeat returns the first workflow (deduplicated)")
  .option("--continue", "when a task does not succeed, cancel only what depends on it (default: cancel the rest)")
  .option("--wait", "wait until it ends and print each task's state; exit 0 only if it SUCCEEDED")
  .option(...json).addOption(coordinator)
  .action(action(async (file: string, opts: { key?: string; continue?: boolean; wait?: boolean; json?: boolean; address?: string }) => (await commands.workflow()).workflowSubmit(file, opts)));
workflow.command("get").description("show a workflow: each task's name, state and what it waits for").argument("<id>").option(...json).addOption(coordinator)
  .action(action(async (id: string, opts: { json?: boolean; address?: string }) => (await commands.workflow()).workflowGet(id, opts)));
workflow.command("watch").description("show a workflow, then each task's new state until it ends; exit 0 only if it SUCCEEDED").argument("<id>").addOption(coordinator)
  .action(action(async (id: string, opts: { address?: string }) => (await commands.workflow()).workflowWatch(id, opts)));
workflow.command("cancel").description("cancel every task of a workflow that has not finished").argument("<id>")
  .option("--reason <text>", "why, for each task's history").option(...json).addOption(coordinator)
  .action(action(async (id: string, opts: { reason?: string; json?: boolean; address?: string }) => (await commands.workflow()).workflowCancel(id, opts)));

program.command("token").description("print a development access token (for grpcurl -H \"authorization: Bearer $(npx taskmesh token)\")")
  .option("--scope <scope>", "a scope to ask for (default: every scope of the key); repeat for more", collect)
  .option("--api-key <secret>", "the API key to use (default: TASKMESH_API_KEY, else the bootstrap admin key up made)")
  .option("--json", "print the whole token response as JSON (refresh token and expiry included)")
  .addOption(new Option("--address <host:port>", "an identity instance (default: TASKMESH_UPSTREAM_IDENTITY, else the running one)"))
  .exitOverride(usageExit)
  .action(action(async (opts: TokenOptions) => (await commands.token()).token(opts)));

const events = program.command("events").description("follow the event bus").exitOverride(usageExit);
events.command("tail").description("print one line per event of a topic until Ctrl-C (a private subscription; acknowledges what it printed)")
  .option("--type <type>", "only this event type, or a prefix ending in .*; repeat for more", collect)
  .option("--topic <topic>", "the topic (default taskmesh.tasks)")
  .option("--from <where>", "earliest, latest (default) or an ISO 8601 time")
  .option("--json", "print each delivery as one line of proto3 JSON")
  .addOption(new Option("--address <host:port>", "an events instance (default: TASKMESH_UPSTREAM_EVENTS, else the running one)"))
  .action(action(async (opts: TailOptions) => (await commands.events()).eventsTail(opts)));

const db = program.command("db").description("the run's Postgres: a psql console, backups and restores").exitOverride(usageExit);
db.command("console").description("psql on the running system's database (Debian's postgresql-client; installed as root when missing); psql's own arguments after --, e.g. db console -- -c 'select 1'")
  .argument("[psql-args...]", "passed to psql as given").allowUnknownOption()
  .action(action(async (args: string[]) => (await commands.db()).dbConsole(args)));
db.command("backup").description("a physical backup of the running system's Postgres into one .tar.gz (default .taskmesh/backups/taskmesh-<time>.tar.gz); prints its path")
  .argument("[file]", "where to write it (a new .tar.gz)")
  .action(action(async (file: string | undefined) => (await commands.db()).dbBackup(file)));
db.command("restore").description("put a backup in place of the stopped system's Postgres data; the next up starts from it")
  .argument("<file>", "a .tar.gz made by db backup")
  .action(action(async (file: string) => (await commands.db()).dbRestore(file)));

program.command("grpcurl")
  .description("run the pinned grpcurl (built into the cache by npm start) with these arguments, e.g. grpcurl -plaintext 127.0.0.1:8080 list")
  .argument("[args...]", "grpcurl's own arguments, passed as given")
  .helpOption(false);

// grpcurl's arguments are its own (-plaintext, -d, -H …): they go to it untouched, not through the parser.
if (process.argv[2] === "grpcurl") await action(async () => (await commands.grpcurl()).grpcurl(process.argv.slice(3)))();
else await program.parseAsync();
