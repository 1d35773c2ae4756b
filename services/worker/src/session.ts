import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { ConnectRequest, ConnectResponse } from "../../../gen/taskmesh/coordinator/v1/worker_service.js";
import type { Logger } from "../../kit/src/index.js";

/** One stream to the coordinator. */
export interface Session {
  readonly call: ClientDuplexStream<ConnectRequest, ConnectResponse>;
  registered: boolean;
  /** Set by `go_away` with `reconnect`: reconnect at once, without backoff. */
  reconnectNow: boolean;
  heartbeat: NodeJS.Timeout | undefined;
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
