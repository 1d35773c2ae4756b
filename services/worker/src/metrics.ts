import { Counter, Histogram, type Registry } from "prom-client";
import { processRegistry, scrapeGauge } from "@taskmesh/kit/metrics";
import { AgentError, defineAgent, type AgentDefinition } from "@taskmesh/worker/service";

/** How an execution ended, as `taskmesh_worker_executions_total` labels it. */
export type ExecutionOutcome = "succeeded" | "failed" | "timed_out" | "stopped";

/** Buckets of `taskmesh_worker_execution_duration_seconds`: 1 ms to an hour. */
export const EXECUTION_BUCKETS: readonly number[] = Object.freeze([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]);

/** The worker's series; {@link WorkerMetrics.instrument} wraps each agent so its executions are counted and timed. */
export class WorkerMetrics {
  private readonly executions: Counter<"capability" | "outcome">;
  private readonly duration: Histogram<"capability" | "outcome">;

  /** `running` says how many handlers run now (the worker's `running`). */
  constructor(running: () => number, registry: Registry = processRegistry) {
    const registers = [registry];
    scrapeGauge({ name: "taskmesh_worker_tasks_in_flight", help: "Task handlers running now on this worker.", registry, read: async () => [[{}, running()]] });
    this.executions = new Counter({ name: "taskmesh_worker_executions_total", help: "Task attempts this worker ran, by capability and how they ended (succeeded, failed, timed_out, stopped: cancelled, lease lost or worker stopping).", labelNames: ["capability", "outcome"], registers });
    this.duration = new Histogram({ name: "taskmesh_worker_execution_duration_seconds", help: "How long a task handler ran, by capability and outcome, in seconds.", labelNames: ["capability", "outcome"], buckets: [...EXECUTION_BUCKETS], registers });
  }

  /** The same agent, its handler counted and timed. */
  instrument(agent: AgentDefinition): AgentDefinition {
    return defineAgent({
      ...agent,
      handler: async (input, ctx) => {
        const began = process.hrtime.bigint();
        let outcome: ExecutionOutcome = "failed";
        try {
          const output = await agent.handler(input, ctx);
          if (typeof output === "object" && output !== null && !Array.isArray(output)) outcome = "succeeded";
          return output;
        } finally {
          if (ctx.signal.aborted) outcome = timedOut(ctx.signal.reason) ? "timed_out" : "stopped";
          this.executions.inc({ capability: agent.capability, outcome });
          this.duration.observe({ capability: agent.capability, outcome }, Number(process.hrtime.bigint() - began) / 1e9);
        }
      },
    });
  }
}

function timedOut(reason: unknown): boolean {
  return reason instanceof AgentError && reason.reason === "BIZ_ATTEMPT_TIMED_OUT";
}
