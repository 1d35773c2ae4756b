import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseDuration } from "@taskmesh/kit/env";
import { projectRoot } from "@taskmesh/kit/project-root";

/** The project's root folder. */
const ROOT = projectRoot(import.meta.url);

/** Where the mesh's one source of truth lives. */
export const TOPOLOGY_PATH = join(ROOT, "deploy/topology.yaml");

/** The identity of the edge Envoy: a caller, not a service. */
export const EDGE = "edge";

const NAME = /^[a-z][a-z0-9-]*$/;
const GRPC_SERVICE = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.[A-Z][A-Za-z0-9]*$/;
const METHOD = /^[A-Z][A-Za-z0-9]*$/;

const duration = z.string().transform((text, ctx) => {
  const ms = /^\d+(\.\d+)?(ms|s|m|h)$/.test(text.trim()) ? parseDuration(text) : undefined;
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: `expected a duration with a unit like 500ms, 15s, 5m, 1h, got ${JSON.stringify(text)}` });
    return z.NEVER;
  }
  return ms;
});

const methodSchema = z.strictObject({
  /** Envoy retries it on unavailable/reset/connect-failure: only for methods safe to repeat. */
  retry: z.boolean().optional(),
  /** A server or bidi stream: no route timeout, bounded by the stream idle timeout and `grpc-timeout`. */
  stream: z.boolean().optional(),
  /** The route timeout when it differs from the default. */
  timeout: duration.optional(),
});

const grpcService = z.strictObject({
  /** The service-wide default for `retry`. */
  retry: z.boolean().optional(),
  methods: z.record(z.string().regex(METHOD, "expected a method name like GetTask"), methodSchema).default({}),
});

const service = z.strictObject({
  replicas: z.number().int().min(0).max(64),
  lbPolicy: z.enum(["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"]).default("ROUND_ROBIN"),
  /** Services (or `edge`) whose identity may call this one. */
  callers: z.array(z.string().regex(NAME, "expected a service name")).default([]),
  /** The infrastructure that must be ready before it starts (the services it calls must be too: see {@link startsAfter}). */
  needs: z.array(z.enum(["postgres", "redis", "kafka"])).default([]),
  /** The name the app registers in `grpc.health.v1` and Envoy checks (envoy#5275). */
  healthService: z.string().optional(),
  grpc: z.record(z.string().regex(GRPC_SERVICE, "expected a full gRPC service name like taskmesh.ledger.v1.LedgerService"), grpcService).default({}),
});

const exposed = z.strictObject({
  service: z.string().regex(GRPC_SERVICE, "expected a full gRPC service name"),
  /** The service that serves it; found from the topology's `grpc` maps when omitted. */
  target: z.string().regex(NAME).optional(),
  /** Only these methods; all when omitted. */
  methods: z.array(z.string().regex(METHOD)).optional(),
});

const schema = z.strictObject({
  trustDomain: z.string().regex(/^[a-z0-9.-]+$/, "expected a DNS-like trust domain"),
  defaults: z.strictObject({
    timeout: duration,
    streamIdleTimeout: duration,
    retry: z.strictObject({ on: z.string().min(1), numRetries: z.number().int().min(1).max(10), perTryTimeout: duration.optional() }),
    circuitBreakers: z.strictObject({
      maxConnections: z.number().int().positive(),
      maxPendingRequests: z.number().int().positive(),
      maxRequests: z.number().int().positive(),
      maxRetries: z.number().int().positive(),
    }),
  }),
  services: z.record(z.string().regex(NAME, "expected a lower-case service name"), service),
  edge: z.strictObject({ expose: z.array(exposed).min(1) }),
});

/** What a method's route does, resolved from the defaults and its service's overrides. */
export interface MethodPolicy {
  readonly retry: boolean;
  readonly stream: boolean;
  /** Route timeout in ms (0 for streams). */
  readonly timeoutMs: number;
}

/** A validated topology, with durations in milliseconds. */
export type Topology = z.output<typeof schema>;
export type ServiceSpec = Topology["services"][string];

/** A topology file that does not hold: the message names the file and every bad field. */
export class TopologyError extends Error {
  override readonly name = "TopologyError";
}

/** Parses, validates and cross-checks a topology held in a YAML string (`source` names it in errors). */
export function parseTopology(text: string, source = "topology.yaml"): Topology {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new TopologyError(`${source}: not valid YAML: ${(error as Error).message}`, { cause: error });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".") || "(root)"}: ${describeIssue(i)}`);
    throw new TopologyError(`${source}:\n${lines.join("\n")}`);
  }
  const problems = crossCheck(parsed.data);
  if (problems.length > 0) throw new TopologyError(`${source}:\n${problems.map((p) => `  ${p}`).join("\n")}`);
  return Object.freeze(parsed.data);
}

/** An issue's message; a bad record key says what the key should look like (zod nests that message). */
function describeIssue(issue: z.core.$ZodIssue): string {
  const inner = issue.code === "invalid_key" ? issue.issues.map((i) => i.message) : [];
  return inner.length > 0 ? `${issue.message}: ${inner.join("; ")}` : issue.message;
}

/** Loads `deploy/topology.yaml` (or another file). */
export function loadTopology(path = TOPOLOGY_PATH): Topology {
  return parseTopology(readFileSync(path, "utf8"), path);
}

/** References between parts of the file: callers, health services, edge targets. */
function crossCheck(t: Topology): string[] {
  const problems: string[] = [];
  const names = Object.keys(t.services);
  for (const [name, s] of Object.entries(t.services)) {
    for (const [i, caller] of s.callers.entries()) {
      if (caller !== EDGE && !names.includes(caller)) problems.push(`services.${name}.callers.${i}: unknown caller ${JSON.stringify(caller)} (services: ${names.join(", ")}; or ${EDGE})`);
      if (caller === name) problems.push(`services.${name}.callers.${i}: a service does not call itself through the mesh`);
    }
    if (s.callers.length > 0 && Object.keys(s.grpc).length === 0) problems.push(`services.${name}.grpc: has callers but serves no gRPC service`);
    if (s.healthService !== undefined && !(s.healthService in s.grpc)) problems.push(`services.${name}.healthService: ${JSON.stringify(s.healthService)} is not one of its grpc services`);
  }
  if (names.includes(EDGE)) problems.push(`services.${EDGE}: the name is taken by the edge's identity`);
  for (const [i, e] of t.edge.expose.entries()) {
    const target = e.target ?? ownerOf(t, e.service);
    if (!target) {
      problems.push(`edge.expose.${i}.target: no service serves ${e.service}; name the target`);
      continue;
    }
    const s = t.services[target];
    if (!s) {
      problems.push(`edge.expose.${i}.target: unknown service ${JSON.stringify(target)}`);
      continue;
    }
    if (!s.callers.includes(EDGE)) problems.push(`edge.expose.${i}: ${target} does not list ${EDGE} among its callers`);
    const declared = s.grpc[e.service];
    for (const j of (e.methods ?? []).keys()) {
      if (!declared) problems.push(`edge.expose.${i}.methods.${j}: ${e.service} is not in services.${target}.grpc, so its methods cannot be listed`);
    }
  }
  return problems;
}

/** The service whose `grpc` map holds a full gRPC service name. */
export function ownerOf(t: Topology, grpcService: string): string | undefined {
  return Object.entries(t.services).find(([, s]) => grpcService in s.grpc)?.[0];
}

/** The services `caller` (a service or `edge`) may call, in file order. */
export function calleesOf(t: Topology, caller: string): string[] {
  return Object.entries(t.services).filter(([, s]) => s.callers.includes(caller)).map(([name]) => name);
}

/**
 * What must be ready before an instance of `service` starts: the
 * infrastructure it `needs`, then every service it calls (it lists them
 * among their callers). The one source of the local run's, compose's and
 * Kubernetes' start order.
 */
export function startsAfter(t: Topology, service: string): string[] {
  const s = t.services[service];
  if (!s) throw new TopologyError(`unknown service ${JSON.stringify(service)}`);
  return [...s.needs, ...calleesOf(t, service)];
}

/** Every identity of the mesh: each service and the edge. */
export function identities(t: Topology): string[] {
  return [...Object.keys(t.services), EDGE];
}

/** `spiffe://<trustDomain>/<name>`. */
export function spiffeId(t: Topology, name: string): string {
  return `spiffe://${t.trustDomain}/${name}`;
}

/** The health-check service name of a service: its `healthService`, else its first gRPC service. */
export function healthServiceOf(t: Topology, name: string): string {
  const s = t.services[name];
  if (!s) throw new Error(`unknown service ${name}`);
  return s.healthService ?? Object.keys(s.grpc)[0] ?? "";
}

/** The route policy of `<grpcService>/<method>` of service `name`. */
export function methodPolicy(t: Topology, name: string, grpcService: string, method?: string): MethodPolicy {
  const g = t.services[name]?.grpc[grpcService];
  const m = method ? g?.methods[method] : undefined;
  const stream = m?.stream ?? false;
  return { retry: !stream && (m?.retry ?? g?.retry ?? false), stream, timeoutMs: stream ? 0 : (m?.timeout ?? t.defaults.timeout) };
}

/** Instance names `<service>-<i>` for the topology's replicas, with overrides such as `{ worker: 3 }`. */
export function instanceNames(t: Topology, replicas: Readonly<Record<string, number>> = {}): { name: string; service: string }[] {
  for (const name of Object.keys(replicas)) if (!(name in t.services)) throw new TopologyError(`replicas: unknown service ${JSON.stringify(name)}`);
  return Object.entries(t.services).flatMap(([service, s]) =>
    Array.from({ length: replicas[service] ?? s.replicas }, (_, i) => ({ name: `${service}-${i}`, service })));
}

/**
 * Who answers reflection at the edge and for which services: the target of
 * the exposed `grpc.reflection.v1.ServerReflection`, speaking for every
 * taskmesh service the edge exposes (so `grpcurl` through the edge can
 * list, describe and call them all). Undefined when the edge exposes no
 * reflection.
 */
export function edgeReflection(t: Topology): { readonly target: string; readonly services: readonly string[] } | undefined {
  const entry = t.edge.expose.find((e) => e.service === "grpc.reflection.v1.ServerReflection");
  const target = entry && (entry.target ?? ownerOf(t, entry.service));
  if (!target) return undefined;
  return { target, services: [...new Set(t.edge.expose.map((e) => e.service).filter((s) => ownerOf(t, s) !== undefined))] };
}
