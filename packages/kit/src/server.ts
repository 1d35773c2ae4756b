import { Server, ServerCredentials, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { beginCall, sender, type InFlightCall, type ServerSurfaceCall, type StreamOut } from "./call-context.js";
import { serverChannelOptions } from "./channel-options.js";
import { toStatusObject } from "./error-wire.js";
import { Code, MeshError, unavailable } from "./errors.js";
import { serviceNameOf, type CallContext, type MethodDefinitionLike, type ServiceDefinitionLike, type ServiceHandlers } from "./handlers.js";
import { HEALTH_DEFINITION, HealthRegistry } from "./health.js";
import { rpcMetrics, type RpcObserver } from "./metrics.js";
import { addReflection } from "./reflection.js";


/**
 * The life of a server: `created` → `starting` (bound, health NOT_SERVING)
 * → `serving` → `draining` → `stopped`. Any other transition throws.
 */
export type ServerState = "created" | "starting" | "serving" | "draining" | "stopped";

const TRANSITIONS: Record<ServerState, readonly ServerState[]> = {
  created: ["starting", "stopped"],
  starting: ["serving", "draining"],
  serving: ["draining"],
  draining: ["stopped"],
  stopped: [],
};

/** How a shutdown ended: every call finished in time, or some were cut off. */
export type ShutdownOutcome = "drained" | "forced";

/** Options of a {@link MeshServer}; all optional but the name and logger. */
export interface MeshServerOptions {
  /** The service's short name, e.g. `config`. */
  readonly name: string;
  /** The process logger; each call gets a child. */
  readonly logger: Logger;
  /** How long in-flight unary calls may take to finish at shutdown, in ms. @default 10000 */
  readonly shutdownGraceMs?: number;
  /** The descriptor set for reflection. @default packages/contracts/gen/descriptor.binpb */
  readonly descriptorSet?: Uint8Array;
  /** Where every call is counted and timed (`rpc_server_*`). @default the RPC series of the process registry */
  readonly metrics?: RpcObserver;
  /**
   * Services reflection describes besides the ones this server serves: the
   * edge sends reflection to one service, which then speaks for every
   * service the edge exposes (`up` sets TASKMESH_REFLECT_SERVICES for it).
   * @default TASKMESH_REFLECT_SERVICES, comma-separated; none
   */
  readonly reflectAlso?: readonly string[];
}

/**
 * A gRPC server built the one taskmesh way: typed handlers over generated
 * definitions, the design's error model on the wire, `grpc.health.v1` per
 * service (NOT_SERVING until the service says it is ready), server
 * reflection, and an ordered, deadline-bound shutdown.
 */
export class MeshServer {
  readonly name: string;
  readonly log: Logger;
  private readonly grpc = new Server(serverChannelOptions);
  private readonly health = new HealthRegistry();
  private readonly serviceNames: string[] = [];
  private readonly inFlight = new Set<InFlightCall>();
  private readonly closers: Array<{ name: string; close: () => unknown }> = [];
  private readonly drainers: Array<{ name: string; drain: () => unknown }> = [];
  private readonly graceMs: number;
  private readonly descriptorSet: Uint8Array | undefined;
  private readonly metrics: RpcObserver;
  private readonly reflectAlso: readonly string[];
  private current: ServerState = "created";
  private boundPort = 0;
  private shutdownPromise: Promise<ShutdownOutcome> | undefined;

  constructor(options: MeshServerOptions) {
    this.name = options.name;
    this.log = options.logger;
    this.graceMs = options.shutdownGraceMs ?? 10_000;
    this.descriptorSet = options.descriptorSet;
    this.metrics = options.metrics ?? rpcMetrics();
    this.reflectAlso = options.reflectAlso ?? (process.env.TASKMESH_REFLECT_SERVICES ?? "").split(",").map((n) => n.trim()).filter((n) => n !== "");
  }

  /** The current state. */
  get state(): ServerState {
    return this.current;
  }

  /** The bound port (after {@link listen}). */
  get port(): number {
    return this.boundPort;
  }

  /** The full names of the services this server serves. */
  get services(): readonly string[] {
    return this.serviceNames;
  }

  /** Registers a generated service definition with typed handlers for every method. */
  addService<D extends ServiceDefinitionLike>(definition: D, handlers: ServiceHandlers<D>): this {
    if (this.current !== "created") throw new Error(`addService in state ${this.current}`);
    const implementation: UntypedServiceImplementation = {};
    for (const [key, method] of Object.entries(definition)) {
      const handler = (handlers as Record<string, unknown>)[key];
      if (typeof handler !== "function") throw new TypeError(`no handler for ${method.path}`);
      implementation[key] = this.adapt(method, handler as (...args: unknown[]) => Promise<unknown>);
    }
    this.grpc.addService(definition as never, implementation);
    const name = serviceNameOf(definition);
    this.serviceNames.push(name);
    this.health.set(name, "NOT_SERVING");
    return this;
  }

  /**
   * Registers work to do when a shutdown starts, after health went NOT_SERVING
   * and before streams are ended (e.g. tell stream peers to go elsewhere).
   * Each may take at most a second; they run together.
   */
  onDrain(name: string, drain: () => unknown): this {
    this.drainers.push({ name, drain });
    return this;
  }

  /** Registers something to close after the server has stopped (pools, listeners), closed in reverse order. */
  onClose(name: string, close: () => unknown): this {
    this.closers.push({ name, close });
    return this;
  }

  /** Binds `address` (`host:port`; port 0 picks one), adds health and reflection, and returns the port. */
  async listen(address: string): Promise<number> {
    this.transition("starting");
    this.health.set("", "NOT_SERVING");
    const health = this.health.handlers() as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const implementation: UntypedServiceImplementation = {};
    for (const [key, method] of Object.entries(HEALTH_DEFINITION)) implementation[key] = this.adapt(method as MethodDefinitionLike<unknown, unknown>, health[key]!, true);
    this.grpc.addService(HEALTH_DEFINITION as never, implementation);
    addReflection(this.grpc, [...new Set([...this.serviceNames, "grpc.health.v1.Health", ...this.reflectAlso])], this.descriptorSet);
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.grpc.bindAsync(address, ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))));
    this.log.info({ address, port: this.boundPort }, "listening");
    return this.boundPort;
  }

  /**
   * Marks the server ready: health SERVING for the whole server and every
   * service, and calls are taken (before, they get UNAVAILABLE
   * `SYS_NOT_READY`). Call it once the service's dependencies are ready.
   */
  markServing(): void {
    this.transition("serving");
    this.setHealth("SERVING");
  }

  /** Sets one service's health (e.g. NOT_SERVING while its database is down), without changing the server's state. */
  setServiceHealth(service: string, serving: boolean): void {
    if (this.current === "serving") this.health.set(service, serving ? "SERVING" : "NOT_SERVING");
  }

  /**
   * Stops in order: health NOT_SERVING → new calls refused → streams ended
   * (callers resume elsewhere) → unary calls drained until the grace
   * deadline → what is left aborted and the server forced → closers run.
   * Idempotent: a second call returns the first one's promise.
   */
  shutdown(): Promise<ShutdownOutcome> {
    this.shutdownPromise ??= this.stop();
    return this.shutdownPromise;
  }

  /**
   * Cuts every call off now (a second signal): aborts all, which answers each
   * with UNAVAILABLE at once, then asks grpc-js to close its sessions (with
   * channelz off it may close none: the process exit that follows does).
   */
  forceStop(): void {
    for (const call of this.inFlight) call.controller.abort(shuttingDown());
    this.grpc.forceShutdown();
  }

  private async stop(): Promise<ShutdownOutcome> {
    if (this.current === "created") {
      this.transition("stopped");
      await this.runClosers();
      return "drained";
    }
    this.transition("draining");
    this.setHealth("NOT_SERVING");
    const started = Date.now();
    await new Promise((resolve) => setImmediate(resolve)); // health watchers send NOT_SERVING before their streams end
    await settlesWithin(Promise.all(this.drainers.map(async ({ name, drain }) => {
      try {
        await drain();
      } catch (error) {
        this.log.error({ err: error, resource: name }, "drain step failed");
      }
    })), 1000);
    for (const call of this.inFlight) if (call.long) call.controller.abort(shuttingDown());
    const transportClosed = new Promise<void>((resolve) => this.grpc.tryShutdown(() => resolve()));
    const drained = Promise.all([...this.inFlight].map((c) => c.done)).then(() => transportClosed);
    let outcome: ShutdownOutcome = "drained";
    if (!(await settlesWithin(drained, this.graceMs))) {
      outcome = "forced";
      this.log.warn({ inFlight: this.inFlight.size, graceMs: this.graceMs }, "grace period over: aborting the calls left");
      for (const call of this.inFlight) call.controller.abort(shuttingDown());
      await settlesWithin(Promise.all([...this.inFlight].map((c) => c.done)), 1000);
      this.grpc.forceShutdown();
    }
    this.transition("stopped");
    await this.runClosers();
    this.log.info({ outcome, ms: Date.now() - started }, "stopped");
    return outcome;
  }

  private async runClosers(): Promise<void> {
    for (const { name, close } of this.closers.reverse()) {
      try {
        await close();
      } catch (error) {
        this.log.error({ err: error, resource: name }, "close failed");
      }
    }
  }

  private setHealth(status: "SERVING" | "NOT_SERVING"): void {
    this.health.set("", status);
    for (const name of this.serviceNames) this.health.set(name, status);
  }

  private transition(next: ServerState): void {
    if (!TRANSITIONS[this.current].includes(next)) throw new Error(`illegal server transition ${this.current} → ${next}`);
    this.current = next;
  }

  /** Starts tracking a call: its context (signal, deadline, logger), counted in flight until it ends. */
  private begin(call: ServerSurfaceCall, method: MethodDefinitionLike<unknown, unknown>): { ctx: CallContext; end: () => void } {
    const { ctx, entry, end } = beginCall(call, method, this.log);
    this.inFlight.add(entry);
    return {
      ctx,
      end: () => {
        this.inFlight.delete(entry);
        end();
      },
    };
  }

  /** The error a failed call reports: the abort reason when the call was aborted, else the thrown error. */
  private failure(error: unknown, ctx: CallContext): MeshError {
    const mesh = ctx.signal.aborted && ctx.signal.reason instanceof MeshError && !(error instanceof MeshError)
      ? ctx.signal.reason
      : MeshError.from(error);
    if (mesh.code === Code.INTERNAL || mesh.code === Code.UNKNOWN) ctx.log.error({ err: mesh.cause ?? mesh, reason: mesh.reason }, "call failed");
    // Checked first: touching ctx.log makes the call's logger, which most failed calls (bad input) never need.
    else if (this.log.isLevelEnabled("debug")) ctx.log.debug({ code: Code[mesh.code], reason: mesh.reason, msg: mesh.message }, "call failed");
    return mesh;
  }

  /**
   * The grpc-js handler for one method. A call is answered exactly once:
   * with the handler's result, or with why it was aborted the moment its
   * signal aborts (deadline, cancellation, shutdown), so a handler that
   * ignores its signal cannot hold its caller; a late result is dropped.
   * `always` serves the call in every state (health must answer while the
   * server starts and drains). Every call is counted by the code it is
   * answered with, refused ones included.
   */
  private adapt(method: MethodDefinitionLike<unknown, unknown>, handler: (...args: unknown[]) => Promise<unknown>, always = false): (...args: any[]) => void {
    const refuse = (): MeshError | undefined => {
      if (always) return undefined;
      if (this.current === "starting") return unavailable("SYS_NOT_READY", "the server is starting; its dependencies are not ready yet", 500);
      return this.current === "draining" || this.current === "stopped" ? shuttingDown() : undefined;
    };
    return (call: ServerSurfaceCall & StreamOut & AsyncIterable<unknown> & { request?: unknown }, callback?: (e: unknown, r?: unknown) => void) => {
      let answered = false;
      const observed = this.metrics.start(method.path);
      const answer = (error: MeshError | undefined, response?: unknown): void => {
        if (answered) return;
        answered = true;
        observed(error ? Code[error.code] ?? "UNKNOWN" : "OK");
        if (method.responseStream) {
          if (error) call.emit("error", toStatusObject(error));
          else call.end();
        } else {
          callback!(error ? toStatusObject(error) : null, response);
        }
      };
      const refused = refuse();
      if (refused) return answer(refused);
      const { ctx, end } = this.begin(call, method);
      ctx.signal.addEventListener("abort", () => answer(this.failure(ctx.signal.reason, ctx)), { once: true });
      const args: unknown[] = [method.requestStream ? call : call.request];
      if (method.responseStream) args.push(sender(call, ctx.signal));
      args.push(ctx);
      handler(...args)
        .then((response) => answer(undefined, response), (error) => answer(this.failure(error, ctx)))
        .finally(end);
    };
  }
}

function shuttingDown(): MeshError {
  return unavailable("SYS_SHUTTING_DOWN", "the server is shutting down; retry on another instance", 100);
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
