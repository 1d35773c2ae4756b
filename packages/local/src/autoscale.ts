import pg from "pg";
import { parseDuration } from "@taskmesh/kit/env";
import { taskSql } from "@taskmesh/ledger-service/sql/tasks";
import { UsageError } from "./usage-error.js";

/**
 * How `up --autoscale worker=MIN..MAX` sizes the workers, the shape of a
 * Kubernetes HPA or KEDA ScaledObject on queue depth: the replicas wanted
 * are the tasks in flight (pending and running) divided by `target` per
 * replica, rounded up, between `min` and `max`. Up at once (at most every
 * `upCooldownMs`); down only after fewer were wanted for `downAfterMs`, to
 * the most wanted over that window.
 */
export interface AutoscalePolicy {
  readonly service: string;
  readonly min: number;
  readonly max: number;
  /** Tasks in flight per replica aimed at. @default 8 (a worker's slots) */
  readonly target: number;
  /** How often the queue is read, in ms. @default 2000 */
  readonly intervalMs: number;
  /** Least time between two scale-ups, in ms. @default 10 s */
  readonly upCooldownMs: number;
  /** How long fewer replicas must be wanted before any go, in ms. @default 60 s */
  readonly downAfterMs: number;
}

/** `worker=1..6` (and the policy's environment: TASKMESH_AUTOSCALE_TARGET, _INTERVAL, _UP_COOLDOWN, _DOWN_AFTER). */
export function parseAutoscale(arg: string, env: NodeJS.ProcessEnv = process.env): AutoscalePolicy {
  const match = /^([a-z][a-z0-9-]*)=(\d+)\.\.(\d+)$/.exec(arg.trim());
  if (!match) throw new UsageError(`--autoscale: expected <service>=<min>..<max>, e.g. worker=1..6; got ${JSON.stringify(arg)}`);
  const [min, max] = [Number(match[2]), Number(match[3])];
  if (min < 1 || max < min || max > 16) throw new UsageError(`--autoscale: ${match[1]}: expected 1 <= min <= max <= 16, got ${min}..${max}`);
  const duration = (name: string, fallback: number): number => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const ms = parseDuration(raw);
    if (ms === undefined) throw new UsageError(`${name}: expected a duration like 500ms or 30s, got ${JSON.stringify(raw)}`);
    return ms;
  };
  const target = Number(env.TASKMESH_AUTOSCALE_TARGET?.trim() || 8);
  if (!Number.isInteger(target) || target < 1) throw new UsageError(`TASKMESH_AUTOSCALE_TARGET: expected a whole number of tasks per replica, got ${JSON.stringify(env.TASKMESH_AUTOSCALE_TARGET)}`);
  return {
    service: match[1]!, min, max, target,
    intervalMs: duration("TASKMESH_AUTOSCALE_INTERVAL", 2000),
    upCooldownMs: duration("TASKMESH_AUTOSCALE_UP_COOLDOWN", 10_000),
    downAfterMs: duration("TASKMESH_AUTOSCALE_DOWN_AFTER", 60_000),
  };
}

/** What the autoscaler remembers between readings. */
export interface AutoscaleMemory {
  /** When it last scaled up (0: never). */
  lastUpAt: number;
  /** The replicas wanted at each reading of the last `downAfterMs`, with the reading's time. */
  readonly wanted: Array<{ at: number; replicas: number }>;
}

/** The replicas to run now, given the tasks in flight and the replicas running. */
export function decide(policy: AutoscalePolicy, memory: AutoscaleMemory, inFlight: number, current: number, now: number): number {
  const wanted = Math.min(policy.max, Math.max(policy.min, Math.ceil(inFlight / policy.target)));
  const windowStart = now - policy.downAfterMs;
  memory.wanted.push({ at: now, replicas: wanted });
  while (memory.wanted[0]!.at < windowStart) memory.wanted.shift();
  if (current < policy.min || current > policy.max) return Math.min(policy.max, Math.max(policy.min, current));
  if (wanted > current) {
    if (now - memory.lastUpAt < policy.upCooldownMs) return current;
    memory.lastUpAt = now;
    return wanted;
  }
  if (wanted < current) {
    // Only once the readings cover the whole window since the last scale-up, and to the most any of them wanted.
    const covered = memory.wanted[0]!.at <= windowStart + policy.intervalMs && now - memory.lastUpAt >= policy.downAfterMs;
    const most = Math.max(...memory.wanted.map((w) => w.replicas));
    if (covered && most < current) return most;
  }
  return current;
}

/**
 * Runs the policy every `intervalMs` against the run's ledger, calling
 * `scaleTo` (one call at a time) when the replicas should change; `current`
 * says how many run now. Returns the stop.
 */
export function startAutoscaler(options: {
  readonly policy: AutoscalePolicy;
  readonly databaseUrl: string;
  readonly current: () => number;
  readonly scaleTo: (replicas: number, why: string) => Promise<void>;
  readonly log: (line: string) => void;
}): () => Promise<void> {
  const { policy } = options;
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 1, application_name: "taskmesh-autoscaler" });
  pool.on("error", () => undefined);
  const memory: AutoscaleMemory = { lastUpAt: 0, wanted: [] };
  let busy = false;
  let lastError = "";
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void (async () => {
      try {
        // Tasks pending or running, per capability, as ClusterService's ListQueues reads them.
        const inFlight = (await pool.query<{ pending: number; running: number }>(taskSql.queueStats)).rows.reduce((n, q) => n + q.pending + q.running, 0);
        lastError = "";
        const current = options.current();
        const next = decide(policy, memory, inFlight, current, Date.now());
        if (next !== current) await options.scaleTo(next, `${inFlight} tasks in flight, ${policy.target} per replica`);
      } catch (error) {
        const message = (error as Error).message;
        if (message !== lastError) options.log(`taskmesh: autoscale ${policy.service}: ${message}`);
        lastError = message;
      } finally {
        busy = false;
      }
    })();
  }, policy.intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await pool.end().catch(() => undefined);
  };
}
