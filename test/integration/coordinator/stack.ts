import pg from "pg";
import { expect, inject } from "vitest";
import { TaskServiceService, type SubmitTaskRequest } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/task_service";
import { TaskState, type Task } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import { freePort } from "@taskmesh/local/secrets";
import { createClient, type MeshClient } from "@taskmesh/kit";
import { startConfigReplica, type ConfigReplica } from "../../support/config-server.js";
import { createTestDatabase, type TestDatabase } from "../../support/postgres.js";
import { startService, waitForServing, type ServiceProcess } from "../../support/processes.js";

/** A worker process of the stack. */
export interface WorkerOptions {
  readonly id: string;
  /** @default all built-ins */
  readonly capabilities?: readonly string[];
  /** @default 4 */
  readonly concurrency?: number;
  /** @default 1 */
  readonly weight?: number;
  /** Its drain grace on SIGTERM. @default 3s */
  readonly grace?: string;
}

/** Options of {@link startStack}. */
export interface StackOptions {
  /** @default 1 */
  readonly coordinators?: number;
  readonly workers?: readonly WorkerOptions[];
  /** Extra coordinator environment. */
  readonly coordinatorEnv?: Record<string, string>;
  /** Start a config replica (in this process) and point the coordinators at it. @default false */
  readonly config?: boolean;
}

/** Real ledger, coordinator and worker processes on a database of their own, and clients for them. */
export interface Stack {
  readonly db: TestDatabase;
  /** A direct connection to the ledger's database, for checks behind the services' backs. */
  readonly sql: pg.Pool;
  /** TaskService over every coordinator replica (round robin). */
  readonly tasks: MeshClient<typeof TaskServiceService>;
  readonly ledger: ServiceProcess;
  readonly coordinators: ServiceProcess[];
  readonly coordinatorAddresses: string[];
  readonly workers: Map<string, ServiceProcess>;
  readonly config: ConfigReplica | undefined;
  /** Starts a worker (or restarts one by id); resolves once it is registered (SERVING). */
  startWorker(options: WorkerOptions): Promise<ServiceProcess>;
  /** Starts coordinator replica `i` again on its port (after a kill). */
  restartCoordinator(i: number): Promise<void>;
  /** Submits and waits until the task ends; returns the final task. */
  run(request: Partial<SubmitTaskRequest> & { capability: string }, timeoutMs?: number): Promise<Task>;
  /** Polls the task until it reaches a terminal state. */
  settle(id: string, timeoutMs?: number): Promise<Task>;
  /** The task states and the tail of each process's output, for a failed assertion's message. */
  describe(): Promise<string>;
  stop(): Promise<void>;
}

const TERMINAL = new Set([TaskState.TASK_STATE_SUCCEEDED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELLED, TaskState.TASK_STATE_TIMED_OUT]);

/** A submit request with the contract's defaults for what `partial` leaves out. */
export function submitRequest(partial: Partial<SubmitTaskRequest> & { capability: string }): SubmitTaskRequest {
  return { input: {}, idempotencyKey: "", maxAttempts: undefined, timeout: undefined, priority: 0, labels: {}, retryPolicy: undefined, ...partial };
}

/** The stacks started and not yet stopped: a timed-out wait reports what they were doing. */
const live = new Set<{ describe(): Promise<string> }>();

/**
 * Polls `check` every 50 ms until true; fails with `what` after `timeoutMs`,
 * adding each live stack's task states and its processes' output.
 */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      const reports = await Promise.all([...live].map((s) => s.describe().catch((e: unknown) => `(no report: ${String(e)})`)));
      throw new Error([`timed out waiting for ${what}`, ...reports].join("\n"));
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopProcess(p: ServiceProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 8000);
  await p.exited;
  clearTimeout(timer);
}

/**
 * How long a process of the stack may take to answer SERVING, in ms: a
 * service compiles its TypeScript as it starts, which takes well over the
 * usual 20 s while the rest of the suite loads both cores.
 */
const START_MS = 60_000;

/** Starts ledger, coordinator(s) and workers as real processes, with fast heartbeats and short leases. */
export async function startStack(label: string, options: StackOptions = {}): Promise<Stack> {
  const db = await createTestDatabase(label);
  const sql = new pg.Pool({ connectionString: db.url, max: 2 });
  const config = options.config ? await startConfigReplica(db.url, `${label}-config`) : undefined;
  // A stack that fails to start leaves nothing running behind it (it would load the rest of the suite).
  const started: ServiceProcess[] = [];
  const abandon = async (): Promise<void> => {
    for (const p of started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
    await Promise.all(started.map((p) => p.exited));
    await config?.stop().catch(() => undefined);
    await sql.end().catch(() => undefined);
    await db.drop().catch(() => undefined);
  };
  const startOf = (service: string, env: Record<string, string>): ServiceProcess => {
    const proc = startService(service, env);
    started.push(proc);
    return proc;
  };
  try {
    const ledgerPort = await freePort();
    const ledger = startOf("ledger", { DATABASE_URL: db.url, TASKMESH_LISTEN: `127.0.0.1:${ledgerPort}`, TASKMESH_INSTANCE: `${label}-ledger` });
    await waitForServing(`127.0.0.1:${ledgerPort}`, ledger, START_MS);
    const coordinatorPorts = await Promise.all(Array.from({ length: options.coordinators ?? 1 }, () => freePort()));
    const coordinatorAddresses = coordinatorPorts.map((p) => `127.0.0.1:${p}`);
    const coordinatorEnv = (i: number): Record<string, string> => ({
      DATABASE_URL: db.url, REDIS_URL: inject("redisUrl"), TASKMESH_UPSTREAM_LEDGER: `127.0.0.1:${ledgerPort}`, TASKMESH_LISTEN: coordinatorAddresses[i]!,
      TASKMESH_INSTANCE: `${label}-coordinator-${i}`, TASKMESH_COORDINATOR_HEARTBEAT: "300ms", TASKMESH_COORDINATOR_LEASE: "2s",
      TASKMESH_COORDINATOR_POLL: "200ms", TASKMESH_COORDINATOR_SWEEP: "200ms", TASKMESH_SHUTDOWN_GRACE: "3s",
      ...(config ? { TASKMESH_UPSTREAM_CONFIG: config.address } : {}), ...options.coordinatorEnv,
    });
    const coordinators = coordinatorAddresses.map((_, i) => startOf("coordinator", coordinatorEnv(i)));
    await Promise.all(coordinators.map((c, i) => waitForServing(coordinatorAddresses[i]!, c, START_MS)));
    const tasks = createClient(TaskServiceService, coordinatorAddresses.length > 1 ? `ipv4:${coordinatorAddresses.join(",")}` : coordinatorAddresses[0]!);
    const workers = new Map<string, ServiceProcess>();

    const startWorker = async (w: WorkerOptions): Promise<ServiceProcess> => {
      // A port found free can be taken by another test file's process before the worker binds it: try another.
      for (let attempt = 1; ; attempt++) {
        const port = await freePort();
        const proc = startOf("worker", {
          TASKMESH_UPSTREAM_COORDINATOR: coordinatorAddresses.join(","), TASKMESH_LISTEN: `127.0.0.1:${port}`, TASKMESH_INSTANCE: w.id,
          TASKMESH_WORKER_ID: w.id, TASKMESH_WORKER_CONCURRENCY: String(w.concurrency ?? 4), TASKMESH_WORKER_WEIGHT: String(w.weight ?? 1),
          TASKMESH_SHUTDOWN_GRACE: w.grace ?? "3s", ...(w.capabilities ? { TASKMESH_WORKER_CAPABILITIES: w.capabilities.join(",") } : {}),
        });
        workers.set(w.id, proc);
        try {
          await waitForServing(`127.0.0.1:${port}`, proc, START_MS);
          return proc;
        } catch (error) {
          if (attempt >= 3 || !proc.output().includes("EADDRINUSE")) throw error;
        }
      }
    };
    await Promise.all((options.workers ?? []).map(startWorker)).catch(async (error: unknown) => {
      tasks.close();
      throw error;
    });

    const settle = async (id: string, timeoutMs = 20_000): Promise<Task> => {
      let task: Task | undefined;
      await until(`task ${id} to end`, async () => {
        task = (await tasks.getTask({ id, view: 0 })).task;
        return task !== undefined && TERMINAL.has(task.state);
      }, timeoutMs);
      return task!;
    };

    const processes = (): Array<[string, ServiceProcess]> => [
      ["ledger", ledger], ...coordinators.map((c, i): [string, ServiceProcess] => [`coordinator-${i}`, c]), ...workers,
    ];
    const report = {
      async describe(): Promise<string> {
        const { rows } = await sql.query("SELECT state, count(*)::int AS n FROM ledger.tasks GROUP BY state ORDER BY state");
        const states = rows.map((r: { state: string; n: number }) => `${r.state}=${r.n}`).join(" ");
        const outputs = processes().map(([name, p]) => {
          const status = p.child.exitCode !== null || p.child.signalCode !== null ? `exited ${p.child.exitCode ?? p.child.signalCode}` : "running";
          return `--- ${name} (${status}):\n${p.output().slice(-4000)}`;
        });
        return [`stack ${label}: tasks ${states || "none"}`, ...outputs].join("\n");
      },
    };
    live.add(report);

    return {
      db, sql, tasks, ledger, coordinators, coordinatorAddresses, workers, config, startWorker, settle, describe: () => report.describe(),
      async restartCoordinator(i) {
        coordinators[i] = startService("coordinator", coordinatorEnv(i));
        await waitForServing(coordinatorAddresses[i]!, coordinators[i]!, START_MS);
      },
      async run(request, timeoutMs) {
        const { task } = await tasks.submitTask(submitRequest(request));
        return settle(task!.id, timeoutMs);
      },
      async stop() {
        live.delete(report);
        tasks.close();
        await Promise.all([...workers.values()].map(stopProcess));
        await Promise.all(coordinators.map(stopProcess));
        await stopProcess(ledger);
        await config?.stop();
        await sql.end();
        expect(await db.openConnectionsAfter(5000)).toBe(0);
        await db.drop();
      },
    };
  } catch (error) {
    await abandon();
    throw error;
  }
}
