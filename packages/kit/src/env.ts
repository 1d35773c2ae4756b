import { z } from "zod";

/** One bad environment variable and what is wrong with it. */
export interface EnvIssue {
  readonly variable: string;
  readonly problem: string;
}

/** A process's environment failed validation; the message names every bad variable. */
export class EnvError extends Error {
  override readonly name = "EnvError";
  constructor(readonly issues: readonly EnvIssue[]) {
    super(`bad environment: ${issues.map((i) => `${i.variable}: ${i.problem}`).join("; ")}`);
  }
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a readable duration (`250ms`, `10s`, `5m`, `1h`, `7d`, or a bare number of ms) into milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNITS[m[2] ?? "ms"]!);
}

/** Schemas for the kinds of values taskmesh reads from its environment. */
export const envSchemas = {
  /** `host:port`, e.g. `127.0.0.1:7001`; port 0 asks the OS for a free one. */
  address: () =>
    z.string().trim().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "expected host:port").refine(
      (a) => Number(a.slice(a.lastIndexOf(":") + 1)) <= 65535, "port out of range"),
  /** A readable duration, returned in milliseconds. */
  duration: () =>
    z.string().transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({ code: "custom", message: `expected a duration like 500ms, 10s or 2m, got ${JSON.stringify(text)}` });
        return z.NEVER;
      }
      return ms;
    }),
  /** A URL with one of the given schemes. */
  url: (...schemes: string[]) =>
    z.string().trim().refine((s) => {
      try {
        return schemes.length === 0 || schemes.includes(new URL(s).protocol.replace(/:$/, ""));
      } catch {
        return false;
      }
    }, `expected a ${schemes.join(" or ")} URL`),
  /** A pino log level. */
  logLevel: () => z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]),
  /** A positive whole number given as text. */
  positiveInt: () => z.coerce.number().int().positive(),
};

/** The variables every service reads, with their defaults. */
export const kitEnvShape = {
  /** The app's own listen address; loopback only in the mesh. @default 127.0.0.1:0 */
  TASKMESH_LISTEN: envSchemas.address().default("127.0.0.1:0"),
  /** The sidecar's outbound address, through which the app calls every other service. */
  TASKMESH_UPSTREAM: envSchemas.address().optional(),
  /** This instance's name, e.g. `config-0`. @default the service name */
  TASKMESH_INSTANCE: z.string().trim().min(1).optional(),
  /**
   * Where Prometheus scrapes this process (`GET /metrics`, plain HTTP); port 0
   * picks one (logged). `taskmesh up` gives every instance a fixed port.
   * @default unset: no metrics endpoint
   */
  TASKMESH_METRICS_LISTEN: envSchemas.address().optional(),
  /** How long in-flight calls may take to finish at shutdown. @default 10s */
  TASKMESH_SHUTDOWN_GRACE: envSchemas.duration().default(10_000),
  /** Log level. @default info */
  LOG_LEVEL: envSchemas.logLevel().default("info"),
};

/**
 * Reads and validates a process's environment once, at start: `shape` maps
 * variable names to zod schemas (whose defaults fill what is unset). Returns a
 * frozen, typed object, or throws an {@link EnvError} naming every bad variable.
 */
export function loadEnv<S extends z.ZodRawShape>(shape: S, env: NodeJS.ProcessEnv = process.env): Readonly<z.output<z.ZodObject<S>>> {
  const input: Record<string, string | undefined> = {};
  for (const key of Object.keys(shape)) {
    const raw = env[key];
    input[key] = raw === undefined || raw.trim() === "" ? undefined : raw;
  }
  const result = z.object(shape).safeParse(input);
  if (!result.success) {
    const issues = new Map<string, string>(); // the first problem of each variable
    for (const issue of result.error.issues) {
      const variable = String(issue.path[0] ?? "?");
      if (!issues.has(variable)) issues.set(variable, input[variable] === undefined && issue.code === "invalid_type" ? "required" : issue.message);
    }
    throw new EnvError([...issues].map(([variable, problem]) => ({ variable, problem })));
  }
  return Object.freeze(result.data);
}

/**
 * The address to reach `service` at: `TASKMESH_UPSTREAM_<SERVICE>` when set
 * (tests, or running without Envoy), else the sidecar's `TASKMESH_UPSTREAM`.
 * A comma-separated list of IPv4 `host:port` pairs (replicas reached
 * directly) becomes one grpc-js `ipv4:` target balanced round robin.
 */
export function upstreamAddress(service: string, env: NodeJS.ProcessEnv = process.env): string {
  const override = `TASKMESH_UPSTREAM_${service.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
  const variable = env[override]?.trim() ? override : "TASKMESH_UPSTREAM";
  const address = env[variable]?.trim();
  if (!address) throw new EnvError([{ variable, problem: `required to reach ${service} (or set ${override})` }]);
  const list = address.split(",").map((a) => a.trim());
  const parsed = list.map((a) => envSchemas.address().safeParse(a));
  const bad = parsed.find((p) => !p.success);
  if (bad && !bad.success) throw new EnvError([{ variable, problem: bad.error.issues[0]?.message ?? "bad address" }]);
  if (list.length === 1) return list[0]!;
  // Several replicas: a grpc-js `ipv4:` target over all of them (IP literals only), balanced round robin by createClient.
  if (!list.every((a) => /^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(a))) {
    throw new EnvError([{ variable, problem: "a list of addresses must be IPv4 host:port pairs, e.g. 127.0.0.1:7001,127.0.0.1:7002" }]);
  }
  return `ipv4:${list.join(",")}`;
}
