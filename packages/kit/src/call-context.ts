/**
 * One server call as a handler sees it: its AbortSignal (aborted at its
 * deadline, when the caller cancels, or by the server), its deadline, a
 * logger bound to it, and a backpressure-aware `send` for response streams.
 */

import type { ServerUnaryCall } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { Code, MeshError } from "./errors.js";
import type { CallContext, MethodDefinitionLike, Send } from "./handlers.js";

/** What every grpc-js server call has (grpc-js does not export the name). */
export type ServerSurfaceCall = Omit<ServerUnaryCall<unknown, unknown>, "request">;

/** A call the server waits for at shutdown: how to abort it, whether it is a stream, and when it is over. */
export interface InFlightCall {
  readonly controller: AbortController;
  /** A response stream: ended at the start of a shutdown rather than drained. */
  readonly long: boolean;
  readonly done: Promise<void>;
}

/** The writing side of a response stream. */
export interface StreamOut {
  write(message: unknown): boolean;
  end(): void;
  once(event: "drain", listener: () => void): unknown;
  removeListener(event: "drain", listener: () => void): unknown;
}

/**
 * Starts a call: its context, its in-flight entry, and `end` to call once it
 * is over (it stops the deadline timer and the cancellation listener).
 */
export function beginCall(call: ServerSurfaceCall, method: MethodDefinitionLike<unknown, unknown>, log: Logger): { ctx: CallContext; entry: InFlightCall; end: () => void } {
  const controller = new AbortController();
  const raw = call.getDeadline();
  const deadline = raw instanceof Date ? raw.getTime() : Number.isFinite(raw) ? raw : undefined;
  let timer: NodeJS.Timeout | undefined;
  if (deadline !== undefined) {
    timer = setTimeout(() => controller.abort(deadlineExceeded()), Math.max(0, deadline - Date.now()));
    timer.unref();
  }
  // grpc-js also reports a passed deadline as "cancelled", usually before the timer above fires;
  // and a client cancels at its own deadline, which the server sees late by the request's transit.
  const received = Date.now();
  const slack = deadline === undefined ? 0 : Math.max(50, (deadline - received) / 10);
  const onCancelled = (): void => controller.abort(deadline !== undefined && Date.now() >= deadline - slack
    ? deadlineExceeded()
    : new MeshError({ code: Code.CANCELLED, reason: "SYS_CANCELLED", message: "the caller cancelled the call" }));
  call.once("cancelled", onCancelled);
  let finish!: () => void;
  const entry: InFlightCall = { controller, long: method.responseStream, done: new Promise<void>((r) => (finish = r)) };
  let callLog: Logger | undefined;
  const ctx: CallContext = {
    method: method.path,
    metadata: call.metadata,
    signal: controller.signal,
    deadline,
    peer: call.getPeer(),
    // Made on first use: most calls log nothing, and a pino child (with its redaction) costs as much as a small call.
    get log() {
      return (callLog ??= log.child({ method: method.path }));
    },
  };
  return {
    ctx,
    entry,
    end: () => {
      // grpc-js may still report a finished call as cancelled: it is over, nothing to abort.
      call.removeListener("cancelled", onCancelled);
      if (timer) clearTimeout(timer);
      finish();
    },
  };
}

/** A `send` that honors backpressure and refuses to write once the call is aborted. */
export function sender<Res>(call: StreamOut, signal: AbortSignal): Send<Res> {
  return (message) => {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (call.write(message)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onDrain = (): void => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = (): void => {
        call.removeListener("drain", onDrain);
        reject(signal.reason);
      };
      call.once("drain", onDrain);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  };
}

/** DEADLINE_EXCEEDED for a call whose deadline passed while it ran. */
export function deadlineExceeded(): MeshError {
  return new MeshError({ code: Code.DEADLINE_EXCEEDED, reason: "SYS_DEADLINE_EXCEEDED", message: "the call's deadline was exceeded" });
}
