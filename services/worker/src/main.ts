import { z } from "zod";
import { WorkerServiceService } from "../../../gen/taskmesh/coordinator/v1/worker_service.js";
import { MeshServer, connectUpstream, createLogger, envSchemas, kitEnvShape, loadEnv, runService } from "../../kit/src/index.js";
import { BUILTIN_AGENTS } from "./agents/index.js";
import { WorkerMetrics } from "./metrics.js";
import { Worker } from "./runtime.js";

/** The worker's environment. */
const envShape = {
  ...kitEnvShape,
  /** The worker's id, stable for the process. @default a random UUID */
  TASKMESH_WORKER_ID: z.string().trim().regex(/^[A-Za-z0-9._:-]{1,128}$/, "expected 1..128 of A-Z a-z 0-9 . _ : -").optional(),
  /** The most tasks run at once, 1..1000. @default 8 */
  TASKMESH_WORKER_CONCURRENCY: envSchemas.positiveInt().max(1000).default(8),
  /** Its weight for the coordinator's weighted round robin, 1..100. @default 1 */
  TASKMESH_WORKER_WEIGHT: envSchemas.positiveInt().max(100).default(1),
  /** Comma-separated built-in capabilities to run. @default all: echo,sleep,hash,fail,flaky */
  TASKMESH_WORKER_CAPABILITIES: z.string().transform((text, ctx) => {
    const names = [...new Set(text.split(",").map((n) => n.trim()).filter((n) => n !== ""))];
    const unknown = names.filter((n) => !BUILTIN_AGENTS.has(n));
    if (names.length === 0 || unknown.length > 0) {
      ctx.addIssue({ code: "custom", message: `expected a comma-separated list of ${[...BUILTIN_AGENTS.keys()].join(", ")}; unknown: ${unknown.join(", ") || "(empty)"}` });
      return z.NEVER;
    }
    return names;
  }).default([...BUILTIN_AGENTS.keys()]),
};

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
      agents: env.TASKMESH_WORKER_CAPABILITIES.map((name) => metrics.instrument(BUILTIN_AGENTS.get(name)!)),
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
