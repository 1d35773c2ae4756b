/**
 * @taskmesh/contracts: the rules every layer shares, in one place. The
 * protobuf contracts (proto/) say them in words; the services, the worker
 * SDK, the CLI and the deployment files check and use them from here.
 */

/** A capability's name: 1..63 characters of `a-z 0-9 . _ -`, starting with a letter (worker.proto `CapabilitySpec.name`). */
export const CAPABILITY_NAME = /^[a-z][a-z0-9._-]{0,62}$/;

/** Whether `name` is a capability's name ({@link CAPABILITY_NAME}). */
export function isCapabilityName(name: string): boolean {
  return CAPABILITY_NAME.test(name);
}

/** The classes an error reason starts with (design.md, "Errors"). */
export const REASON_CLASSES = ["AUTH", "VAL", "RES", "SYS", "EXT", "RATE", "BIZ"] as const;

/**
 * An error reason: its class, then UPPER_SNAKE words of `A-Z 0-9`, e.g.
 * `VAL_INVALID_INPUT` (task.proto `TaskError.reason`, `google.rpc.ErrorInfo.reason`).
 */
export const REASON = new RegExp(`^(${REASON_CLASSES.join("|")})_[A-Z0-9]+(_[A-Z0-9]+)*$`);

/** Whether `reason` is an error reason ({@link REASON}). */
export function isReason(reason: string): boolean {
  return REASON.test(reason);
}

/** The Kafka topics taskmesh writes, by what they carry. */
export const TOPICS = {
  /** Every task transition and progress report (`taskmesh.task.v1.*` CloudEvents), keyed by task id. */
  tasks: "taskmesh.tasks",
  /** Identity's audit events (`taskmesh.identity.v1.*`). */
  identity: "taskmesh.identity",
  /** Deliveries the events service gave up on. */
  deadLetters: "taskmesh.dlq",
} as const;

/** The `iss` of the access tokens identity issues and the edge requires, unless configured otherwise. */
export const TOKEN_ISSUER = "taskmesh-identity";

/** The scopes a token or an API key may carry (design.md, "Identity"). */
export const SCOPES = ["tasks:read", "tasks:write", "worker", "events:read", "events:write", "config:read", "config:write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];
