import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { ConnectRequest, ConnectResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { CallOptions, Logger } from "@taskmesh/kit";
import type { AgentDefinition } from "./agent.js";
import type { BackoffOptions } from "./backoff.js";

/** What the worker needs of a WorkerService client: the kit client's `connect`. */
export interface WorkerConnector {
  connect(options?: CallOptions): ClientDuplexStream<ConnectRequest, ConnectResponse>;
}

/** Options of a {@link Worker}; all optional but the client, agents and logger. */
export interface WorkerOptions {
  /** The coordinator's WorkerService (`connectUpstream(WorkerServiceService, "coordinator")`). */
  readonly client: WorkerConnector;
  /** The agents it runs, capability names unique. */
  readonly agents: readonly AgentDefinition[];
  readonly logger: Logger;
  /** Stable for the life of the process. @default a random UUID */
  readonly workerId?: string;
  /** @default `worker@<hostname>` */
  readonly name?: string;
  /** The most tasks run at once over all capabilities, 1..1000. @default 8 */
  readonly maxConcurrency?: number;
  /** Free-form labels sent at registration. @default {} */
  readonly labels?: Readonly<Record<string, string>>;
  /** The software version sent at registration. @default "0.0.0" */
  readonly version?: string;
  /** Weight for weighted round-robin, 1..100. @default 1 */
  readonly weight?: number;
  /** Reconnect backoff. @default 200ms doubling to 10s, 20% jitter */
  readonly backoff?: BackoffOptions;
  /** Heartbeat interval until the coordinator sets one, in ms. @default 10000 */
  readonly heartbeatMs?: number;
  /** An unconfirmed result is sent again at the next heartbeat this long after its last send, in ms. @default 5000 */
  readonly resultResendMs?: number;
  /** How long a cancelled handler may take to stop before the cancel is acknowledged anyway, in ms. @default 2000 */
  readonly cancelGraceMs?: number;
  /**
   * How long to wait for the coordinator to close the stream after the
   * worker half-closes it, in ms. The coordinator closes once it has
   * recorded what the worker sent last (the tasks a drain hands back), so
   * the wait is usually a few ms; past it the worker cancels the stream and
   * those tasks are recorded as handed back a moment after it exits. A
   * worker whose stream broke just as its drain handed tasks back first
   * waits, within the same time, to register again and say so.
   * @default 5000
   */
  readonly closeWaitMs?: number;
}
