import { isCapabilityName, isReason } from "@taskmesh/contracts";
import type { Logger } from "@taskmesh/kit";
import type { TaskError } from "@taskmesh/contracts/gen/taskmesh/task/v1/task";
import type { ChildHandle, SpawnOptions } from "./children.js";


/** What a handler gets besides its input. */
export interface AgentContext {
  /** Aborted when the task is cancelled, its deadline passes, its lease is lost, or the worker stops. */
  readonly signal: AbortSignal;
  /** The attempt number, 1-based. */
  readonly attempt: number;
  /** The task's id. */
  readonly taskId: string;
  /** Reports progress (percent 0..100, a short status line, structured details); fire-and-forget. */
  progress(percent?: number, message?: string, details?: Record<string, unknown>): void;
  /** A logger bound to the task. */
  readonly log: Logger;
  /**
   * Spawns a child task (any capability), keyed by its step under this task:
   * the handler run again (after a crash, or resumed) gets the same child
   * back, with its state and outcome, instead of a new one.
   */
  spawn(capability: string, input?: Record<string, unknown>, options?: SpawnOptions): ChildHandle;
  /**
   * The outputs of `children`, in order, once all SUCCEEDED (the first that
   * did not throws a ChildTaskError). While some run, the attempt parks: the
   * handler stops here, the task waits holding no worker slot, and the
   * handler runs again from the start once they have all ended.
   */
  all(children: readonly ChildHandle[]): Promise<Array<Record<string, unknown>>>;
  /** The first of `children` (in order) to have ended, with its index and output; parks until one has. */
  any(children: readonly ChildHandle[]): Promise<{ index: number; output: Record<string, unknown> }>;
}

/** A handler: takes a task's input, returns its output object, or throws (an {@link AgentError} to choose reason and retryability). */
export type AgentHandler = (input: Record<string, unknown>, ctx: AgentContext) => Promise<Record<string, unknown>> | Record<string, unknown>;

/** Options of {@link defineAgent}. */
export interface AgentOptions {
  /** The capability it runs (e.g. `echo`). */
  readonly capability: string;
  /** The handler. */
  readonly handler: AgentHandler;
  /** The most tasks of this capability run at once; 0 means bounded only by the worker. @default 0 */
  readonly concurrency?: number;
  /** A short description, sent at registration. @default "" */
  readonly description?: string;
}

/** A validated, frozen agent definition. */
export interface AgentDefinition {
  readonly capability: string;
  readonly handler: AgentHandler;
  readonly concurrency: number;
  readonly description: string;
}

/** Marks what {@link defineAgent} made; symbol-based, so agents from another copy of the SDK (an installed bundle) still count. */
const AGENT = Symbol.for("taskmesh.worker.agent");

/** Whether `value` is an agent {@link defineAgent} made (validated and frozen). */
export function isAgent(value: unknown): value is AgentDefinition {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[AGENT] === true && Object.isFrozen(value);
}

/** Defines an agent: validates the capability name and concurrency, fills defaults, freezes it. */
export function defineAgent(options: AgentOptions): AgentDefinition {
  if (typeof options !== "object" || options === null) throw new TypeError("defineAgent takes { capability, handler, concurrency?, description? }");
  if (!isCapabilityName(options.capability)) throw new TypeError(`bad capability name ${JSON.stringify(options.capability)}: 1..63 of a-z 0-9 . _ -, starting with a letter`);
  const concurrency = options.concurrency ?? 0;
  if (!Number.isInteger(concurrency) || concurrency < 0 || concurrency > 1000) throw new TypeError(`bad concurrency ${concurrency} for ${options.capability}: 0..1000`);
  if (typeof options.handler !== "function") throw new TypeError(`no handler for ${options.capability}`);
  return Object.freeze({ capability: options.capability, handler: options.handler, concurrency, description: options.description ?? "", [AGENT]: true });
}

const AGENT_ERROR = Symbol.for("taskmesh.worker.AgentError");

/** Options of an {@link AgentError}. */
export interface AgentErrorInit {
  /** UPPER_SNAKE with a class prefix. @default BIZ_HANDLER_FAILED */
  readonly reason?: string;
  /** Whether another attempt may succeed. @default true */
  readonly retryable?: boolean;
  /** Structured details for the task's error. */
  readonly details?: Record<string, unknown>;
  readonly cause?: unknown;
}

/** A handler's failure, saying why (reason) and whether a retry may help. */
export class AgentError extends Error {
  override readonly name = "AgentError";
  readonly reason: string;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;
  readonly [AGENT_ERROR] = true;

  constructor(message: string, init: AgentErrorInit = {}) {
    super(message, { cause: init.cause });
    this.reason = init.reason !== undefined && isReason(init.reason) ? init.reason : "BIZ_HANDLER_FAILED";
    this.retryable = init.retryable ?? true;
    this.details = init.details;
  }

  /** Symbol-based, so errors from another copy of this module still match. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[AGENT_ERROR] === true;
  }
}

/** The non-retryable VAL_INVALID_INPUT failure a handler throws for bad input. */
export function invalidInput(message: string, details?: Record<string, unknown>): AgentError {
  return new AgentError(message, { reason: "VAL_INVALID_INPUT", retryable: false, details });
}

const MAX_MESSAGE = 4096;

/** The wire TaskError for anything a handler threw: AgentErrors as they say, anything else retryable BIZ_HANDLER_FAILED. */
export function toTaskError(error: unknown): TaskError {
  if (error instanceof AgentError) {
    return { reason: error.reason, message: error.message.slice(0, MAX_MESSAGE), retryable: error.retryable, details: error.details };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { reason: "BIZ_HANDLER_FAILED", message: message.slice(0, MAX_MESSAGE), retryable: true, details: undefined };
}
