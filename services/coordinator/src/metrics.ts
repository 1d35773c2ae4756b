import { Counter, type Registry } from "prom-client";
import { processRegistry, scrapeGauge } from "@taskmesh/kit/metrics";
import type { Dispatcher, LedgerClient } from "./dispatcher.js";
import { STRATEGIES, type StrategyName } from "./strategies.js";

/**
 * Registers the dispatcher's gauges, read at scrape time from the worker
 * streams this replica holds: `taskmesh_workers_connected`,
 * `taskmesh_worker_slots{state="busy|free"}`,
 * `taskmesh_worker_slot_utilization` and `taskmesh_dispatch_strategy{strategy}`.
 */
export function registerCoordinatorMetrics(dispatcher: Dispatcher, registry: Registry = processRegistry): void {
  const slots = (): { busy: number; free: number } => {
    let busy = 0;
    let free = 0;
    for (const s of dispatcher.sessions.values()) {
      busy += s.heldCount;
      if (!s.draining) free += Math.max(0, s.info.maxConcurrency - s.heldCount);
    }
    return { busy, free };
  };
  scrapeGauge({
    name: "taskmesh_workers_connected",
    help: "Workers with an open Connect stream to this coordinator replica (draining ones included).",
    registry,
    read: async () => [[{}, dispatcher.sessions.size]],
  });
  scrapeGauge({
    name: "taskmesh_worker_slots",
    help: "Task slots of the workers connected to this replica: busy (a task held) or free (open for assignments; draining workers have none).",
    labelNames: ["state"],
    registry,
    read: async () => {
      const { busy, free } = slots();
      return [[{ state: "busy" }, busy], [{ state: "free" }, free]];
    },
  });
  scrapeGauge({
    name: "taskmesh_worker_slot_utilization",
    help: "Busy slots over all slots of the workers connected to this replica, 0 to 1 (0 without workers).",
    registry,
    read: async () => {
      const { busy, free } = slots();
      return [[{}, busy + free === 0 ? 0 : busy / (busy + free)]];
    },
  });
  scrapeGauge({
    name: "taskmesh_dispatch_strategy",
    help: "The dispatch strategy in use: 1 for the current one, 0 for the others.",
    labelNames: ["strategy"],
    registry,
    read: async () => STRATEGIES.map((strategy) => [{ strategy }, strategy === dispatcher.strategy ? 1 : 0] as const),
  });
}

/**
 * The ledger client the dispatcher assigns through and submits create
 * through, counting each task it assigns, and each task a create leased to
 * a worker (sync match), in `taskmesh_dispatches_total{strategy}` under the
 * strategy in use at that moment.
 */
export function countDispatches(ledger: LedgerClient, strategy: () => StrategyName, registry: Registry = processRegistry): LedgerClient {
  const dispatches = new Counter({
    name: "taskmesh_dispatches_total",
    help: "Tasks assigned to workers by this replica, by the dispatch strategy that chose the workers.",
    labelNames: ["strategy"],
    registers: [registry],
  });
  for (const name of STRATEGIES) dispatches.inc({ strategy: name }, 0);
  return {
    ...ledger,
    assignTasks: async (request, options) => {
      const response = await ledger.assignTasks(request, options);
      dispatches.inc({ strategy: strategy() }, response.tasks.length);
      return response;
    },
    createTasks: async (request, options) => {
      const response = await ledger.createTasks(request, options);
      const leased = response.results.filter((r) => r.result?.$case === "response" && r.result.value.created && r.result.value.task?.lease).length;
      if (leased > 0) dispatches.inc({ strategy: strategy() }, leased);
      return response;
    },
  };
}
