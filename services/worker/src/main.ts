import { z } from "zod";
import { WorkerServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { EnvError, MeshServer, connectUpstream, createLogger, envSchemas, kitEnvShape, loadEnv, runService } from "@taskmesh/kit";
import { AgentModuleError, loadAgentModule, Worker, type AgentDefinition } from "@taskmesh/worker/service";
import { BUILTIN_AGENTS } from "./agents/index.js";
import { WorkerMetrics } from "./metrics.js";

/** The worker's environment. */
const envShape = {
  ...kitEnvShape,
  /** The worker's id, stable for the process. @default a random UUID */
  TASKMESH_WORKER_ID: z.string().trim().regex(/^[A-Za-z0-9._:-]{1,128}$/, "expected 1..128 of A-Z a-z 0-9 . _ : -").optional(),
  /** The most tasks run at once, 1..1000. @default 8 */
  TASKMESH_WORKER_CONCURRENCY: envSchemas.positiveInt().max(1000).default(8),
  /** Its weight for the coordinator's weighted round robin, 1..100. @default 1 */
  TASKMESH_WORKER_WEIGHT: envSchemas.positiveInt().max(100).default(1),
  /** Comma-separated built-in capabilities to run (not with TASKMESH_WORKER_AGENTS). @default all: echo,sleep,hash,fail,flaky */
  TASKMESH_WORKER_CAPABILITIES: z.string().transform((text, ctx) => {
    const names = [...new Set(text.split(",").map((n) => n.trim()).filter((n) => n !== ""))];
    const unknown = names.filter((n) => !BUILTIN_AGENTS.has(n));
    if (names.length === 0 || unknown.length > 0) {
      ctx.addIssue({ code: "custom", message: `expected a comma-separated list of ${[...BUILTIN_AGENTS.keys()].join(", ")}; unknown: ${unknown.join(", ") || "(empty)"}` });
      return z.NEVER;
    }
    return names;
  }).optional(),
  /**
   * A module of agents of your own to run instead of the built-ins (`taskmesh
   * worker ./my-agents.ts`): its default export is an agent made with
   * `defineAgent` from `@taskmesh/worker`, or a list of them.
   */
  TASKMESH_WORKER_AGENTS: z.string().trim().min(1).optional(),
};

/** The agents this worker runs: the module's, or the built-ins named (all of them by default). */
async function agentsOf(env: { TASKMESH_WORKER_AGENTS?: string | undefined; TASKMESH_WORKER_CAPABILITIES?: string[] | undefined }): Promise<AgentDefinition[]> {
  if (env.TASKMESH_WORKER_AGENTS === undefined) return (env.TASKMESH_WORKER_CAPABILITIES ?? [...BUILTIN_AGENTS.keys()]).map((name) => BUILTIN_AGENTS.get(name)!);
  if (env.TASKMESH_WORKER_CAPABILITIES !== undefined) {
    throw new EnvError([{ variable: "TASKMESH_WORKER_CAPABILITIES", problem: "names built-in agents: leave it unset with TASKMESH_WORKER_AGENTS" }]);
  }
  try {
    return await loadAgentModule(env.TASKMESH_WORKER_AGENTS);
  } catch (error) {
    if (error instanceof AgentModuleError) throw new EnvError([{ variable: "TASKMESH_WORKER_AGENTS", problem: error.message }]);
    throw error;
  }
}

// The worker serves no API of its own; its MeshServer carries only health and
// reflection (SERVING once registered with a coordinator), so runService's
// lifecycle and the mesh's health checks apply unchanged. On SIGTERM the
// server stops first, then its closer drains the worker within the grace.
await runService({
  name: "worker",
  async start() {
    const env = loadEnv(envShape);
    const instance = env.TASKMESH_INSTANCE ?? "worker";
    const log = createLogger({ service: "worker", instance, level: env.LOG_LEVEL });
    const client = connectUpstream(WorkerServiceService, "coordinator");
    const metrics = new WorkerMetrics(() => worker.running);
    const worker: Worker = new Worker({
      client,
      agents: (await agentsOf(env)).map((agent) => metrics.instrument(agent)),
      logger: log,
      workerId: env.TASKMESH_WORKER_ID,
      name: instance,
      maxConcurrency: env.TASKMESH_WORKER_CONCURRENCY,
      weight: env.TASKMESH_WORKER_WEIGHT,
      version: process.env["npm_package_version"] ?? "0.0.0",
    });
    const server = new MeshServer({ name: "worker", logger: log, shutdownGraceMs: env.TASKMESH_SHUTDOWN_GRACE })
      .onClose("coordinator client", () => client.close())
      .onClose("worker", () => worker.drain(env.TASKMESH_SHUTDOWN_GRACE, "SIGTERM"));
    await server.listen(env.TASKMESH_LISTEN);
    return {
      server,
      log,
      async ready(signal) {
        worker.start();
        await worker.whenRegistered(signal);
      },
    };
  },
});
