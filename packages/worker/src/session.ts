import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { ConnectRequest, ConnectResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { TaskResult } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import type { Logger } from "@taskmesh/kit";

/** One stream to the coordinator. */
export interface Session {
  readonly call: ClientDuplexStream<ConnectRequest, ConnectResponse>;
  registered: boolean;
  /** Set by `go_away` with `reconnect`: reconnect at once, without backoff. */
  reconnectNow: boolean;
  heartbeat: NodeJS.Timeout | undefined;
  /** The coordinator takes `results` batches (its `registered` said so). */
  batches: boolean;
  /** Results waiting for the batch that leaves once this turn of the event loop is done. */
  results: TaskResult[];
}

/**
 * Sends a result: to a coordinator that takes batches, with every other
 * result ready in this turn of the event loop, in one `results` message
 * (a batch of assignments finishing together reports together); else
 * alone. False when the write fails (the result is sent again later).
 */
export function sendResult(session: Session, result: TaskResult, log: Logger): boolean {
  if (!session.batches) return writeTo(session, { payload: { $case: "result", value: result } }, log);
  if (session.results.push(result) === 1) {
    setImmediate(() => {
      const results = session.results.splice(0);
      writeTo(session, results.length === 1 ? { payload: { $case: "result", value: results[0]! } } : { payload: { $case: "results", value: { results } } }, log);
    });
  }
  return true;
}

/** Writes on the session's stream, registered or not; false when the write fails. */
export function writeTo(session: Session, message: ConnectRequest, log: Logger): boolean {
  try {
    session.call.write(message);
    return true;
  } catch (error) {
    log.debug({ err: error }, "write failed");
    return false;
  }
}
