import { Server, ServerCredentials, credentials, makeGenericClientConstructor, status, type ServiceDefinition } from "@grpc/grpc-js";

/** The OTLP trace export call, as Jaeger (and every collector) serves it on its OTLP gRPC port. */
const EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/** The call's messages as they travel: the buffer keeps requests as bytes and never parses them. */
const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const TRACE_SERVICE: ServiceDefinition = {
  Export: { path: EXPORT_PATH, requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};

/** What {@link SpanBuffer.deliver} did. */
export interface Delivered {
  /** Export requests Jaeger accepted. */
  readonly delivered: number;
  /** Requests it refused, or that the buffer had to drop when full. */
  readonly lost: number;
}

/**
 * Holds the spans the services and Envoys export while Jaeger is not there
 * yet (its first build takes minutes, and `up` does not wait for it): it
 * listens on Jaeger's OTLP gRPC port, answers every trace export as
 * accepted, and keeps the requests as they came (at most `maxBytes`; the
 * oldest go first, counted as lost). Once Jaeger is built, {@link close}
 * frees the port for it, and {@link deliver} sends what waited, in order.
 */
export class SpanBuffer {
  private readonly held: Buffer[] = [];
  private bytes = 0;
  private dropped = 0;
  private server: Server | undefined;

  constructor(private readonly maxBytes = 64 * 1024 * 1024) {}

  /** Listens on `address` (host:port). */
  async listen(address: string): Promise<void> {
    const server = new Server();
    server.addService(TRACE_SERVICE, {
      Export: (call: { request: Buffer }, callback: (error: null, response: Buffer) => void) => {
        this.hold(call.request);
        callback(null, Buffer.alloc(0)); // an empty ExportTraceServiceResponse: all accepted
      },
    });
    await new Promise<void>((resolve, reject) => server.bindAsync(address, ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve())));
    this.server = server;
  }

  /** Export requests held now. */
  get size(): number {
    return this.held.length;
  }

  /** Stops listening (requests held stay held). */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  }

  /** Sends every held request to the OTLP gRPC endpoint at `address`, oldest first; the buffer is empty after. */
  async deliver(address: string, timeoutMs = 10_000): Promise<Delivered> {
    const Client = makeGenericClientConstructor(TRACE_SERVICE, "TraceService");
    const client = new Client(address, credentials.createInsecure());
    let delivered = 0;
    let lost = this.dropped;
    try {
      for (const request of this.held.splice(0)) {
        const ok = await new Promise<boolean>((resolve) => {
          client.makeUnaryRequest(EXPORT_PATH, raw.serialize, raw.deserialize, request, { deadline: Date.now() + timeoutMs }, (error) => resolve(!error || error.code === status.OK));
        });
        if (ok) delivered++;
        else lost++;
      }
    } finally {
      client.close();
      this.bytes = 0;
      this.dropped = 0;
    }
    return { delivered, lost };
  }

  private hold(request: Buffer): void {
    this.held.push(request);
    this.bytes += request.length;
    while (this.bytes > this.maxBytes && this.held.length > 0) {
      this.bytes -= this.held.shift()!.length;
      this.dropped++;
    }
  }
}
