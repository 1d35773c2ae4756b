import { WorkerServiceService, type ConnectRequest, type ConnectResponse } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import type { Assignment } from "@taskmesh/contracts/gen/taskmesh/worker/v1/worker";
import { MeshServer, createLogger, unavailable } from "@taskmesh/kit";

type Payload<C extends string> = Extract<NonNullable<ConnectRequest["payload"]>, { $case: C }>["value"];

/** One Connect stream as the fake coordinator sees it. */
export class FakeSession {
  readonly received: ConnectRequest[] = [];
  ended = false;
  /** Ends the stream with UNAVAILABLE, as a failing coordinator would. */
  kill!: () => void;
  constructor(readonly index: number, readonly send: (message: ConnectResponse) => Promise<void>) {}

  assign(assignment: Partial<Assignment> & { taskId: string; capability: string }): Promise<void> {
    return this.send({ payload: { $case: "assignment", value: {
      attempt: 1, input: {}, deadline: undefined, traceparent: "", tracestate: "", leaseId: `lease-${assignment.taskId}`,
      leaseExpiresAt: undefined, maxAttempts: 3, labels: {}, idempotencyKey: "", ...assignment,
    } } });
  }
}

/** Options of a {@link FakeCoordinator}. */
export interface FakeCoordinatorOptions {
  /** @default 0 */
  readonly port?: number;
  /** The heartbeat interval it gives, in ms. @default 100 */
  readonly heartbeatMs?: number;
  /** Answer every result with `result_recorded` at once. @default true */
  readonly autoRecord?: boolean;
  /** Say in `registered` that it takes `results` batches (answered with one `results_recorded`). @default false, as a coordinator from before batches */
  readonly batches?: boolean;
}

/** An in-process WorkerService on a real MeshServer that records what workers send and lets a test push messages. */
export class FakeCoordinator {
  readonly sessions: FakeSession[] = [];
  /** Every message from every stream, in arrival order. */
  readonly log: Array<{ session: FakeSession; message: ConnectRequest }> = [];
  autoRecord: boolean;
  /** Leave each `register` unanswered until {@link answerHeld} (a coordinator slow to take a worker back). */
  holdRegistered = false;
  private readonly held: Array<() => void> = [];
  private readonly listeners = new Set<() => void>();

  private constructor(readonly server: MeshServer, readonly options: FakeCoordinatorOptions) {
    this.autoRecord = options.autoRecord ?? true;
  }

  get port(): number {
    return this.server.port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(options: FakeCoordinatorOptions = {}): Promise<FakeCoordinator> {
    const logger = createLogger({ service: "fake-coordinator", level: "silent" });
    const server = new MeshServer({ name: "coordinator", logger, shutdownGraceMs: 500 });
    let fake!: FakeCoordinator;
    server.addService(WorkerServiceService, { connect: (requests, send) => fake.serve(requests, send) });
    fake = new FakeCoordinator(server, options);
    await server.listen(`127.0.0.1:${options.port ?? 0}`);
    server.markServing();
    return fake;
  }

  stop(): Promise<unknown> {
    return this.server.shutdown();
  }

  /** The latest stream. */
  get session(): FakeSession {
    const s = this.sessions.at(-1);
    if (!s) throw new Error("no session yet");
    return s;
  }

  /** Messages of one kind (from all streams, or one). */
  all<C extends NonNullable<ConnectRequest["payload"]>["$case"]>(kind: C, session?: FakeSession): Array<Payload<C>> {
    return this.log.filter((e) => e.message.payload?.$case === kind && (!session || e.session === session))
      .map((e) => e.message.payload!.value as Payload<C>);
  }

  /** Waits for a message of `kind` matching `match` (already received or still to come). */
  waitFor<C extends NonNullable<ConnectRequest["payload"]>["$case"]>(kind: C, match: (value: Payload<C>, session: FakeSession) => boolean = () => true, timeoutMs = 3000): Promise<{ value: Payload<C>; session: FakeSession }> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.log.find((e) => e.message.payload?.$case === kind && match(e.message.payload.value as Payload<C>, e.session));
        if (!hit) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        (resolve as (v: unknown) => void)({ value: hit.message.payload!.value, session: hit.session });
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`no ${kind} within ${timeoutMs}ms; got ${this.log.map((e) => e.message.payload?.$case).join(",")}`));
      }, timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  /** Answers the registrations held so far, and takes the next ones at once. */
  answerHeld(): void {
    this.holdRegistered = false;
    for (const answer of this.held.splice(0)) answer();
  }

  /** Waits for the stream number `index` (0-based) to register. */
  async registered(index: number, timeoutMs = 3000): Promise<FakeSession> {
    return (await this.waitFor("register", (_, s) => s.index === index, timeoutMs)).session;
  }

  /** Lets each `waitFor` look at what arrived. */
  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  private async serve(requests: AsyncIterable<ConnectRequest>, send: (m: ConnectResponse) => Promise<void>): Promise<void> {
    const session = new FakeSession(this.sessions.length, send);
    this.sessions.push(session);
    const killed = new Promise<never>((_, reject) => (session.kill = () => reject(unavailable("SYS_TEST_KILL", "killed by the test"))));
    killed.catch(() => undefined);
    const read = (async () => {
      for await (const message of requests) {
        this.log.push({ session, message });
        const p = message.payload;
        if (p?.$case === "register") {
          if (this.holdRegistered) {
            this.notify();
            await new Promise<void>((resolve) => this.held.push(resolve));
          }
          await send({ payload: { $case: "registered", value: {
            sessionId: `s-${session.index}`, heartbeatInterval: { seconds: 0n, nanos: (this.options.heartbeatMs ?? 100) * 1e6 },
            leaseDuration: { seconds: 30n, nanos: 0 }, coordinatorId: "fake", serverTime: new Date(), batches: this.options.batches ?? false,
          } } });
        } else if (p?.$case === "result" && this.autoRecord) {
          await send({ payload: { $case: "resultRecorded", value: { taskId: p.value.taskId, attempt: p.value.attempt, accepted: true, reason: "", state: 0 } } });
        } else if (p?.$case === "results" && this.autoRecord) {
          await send({ payload: { $case: "resultsRecorded", value: { results: p.value.results.map((r) => ({ taskId: r.taskId, attempt: r.attempt, accepted: true, reason: "", state: 0 })) } } });
        }
        this.notify();
      }
    })();
    try {
      await Promise.race([read, killed]);
    } finally {
      session.ended = true;
      this.notify();
    }
  }
}
