import { TraceFlags, trace } from "@opentelemetry/api";
import { Client, credentials, Metadata, type ChannelCredentials, type ChannelOptions, type ClientDuplexStream, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { clientChannelOptions } from "./channel-options.js";
import { fromServiceError } from "./error-wire.js";
import { Code, MeshError } from "./errors.js";
import { upstreamAddress } from "./env.js";
import type { CallContext, MethodDefinitionLike, ServiceDefinitionLike } from "./handlers.js";

/** Per-call options of a {@link MeshClient} call. */
export interface CallOptions {
  /**
   * The handler's context when calling on behalf of a caller: the call gets
   * at most the caller's remaining time, and is cancelled with it.
   */
  readonly parent?: Pick<CallContext, "signal" | "deadline">;
  /** This call's own time budget in ms. @default the client's `timeoutMs` (unary); none for streams */
  readonly timeoutMs?: number;
  /** Cancels the call when aborted. */
  readonly signal?: AbortSignal;
  /** Metadata to send. */
  readonly metadata?: Metadata;
  /**
   * Wait (within the deadline) for the channel to connect instead of failing
   * at once with UNAVAILABLE while the server is unreachable. @default false
   */
  readonly waitForReady?: boolean;
}

/** grpc-js call options for a call: its deadline. */
function grpcOptions(deadline: number | undefined): { deadline?: number } {
  return deadline === undefined ? {} : { deadline };
}

/**
 * The metadata to send: the caller's (copied), with wait-for-ready set when
 * asked (grpc-js takes it there), and `x-envoy-force-trace` when the call
 * is part of a sampled trace: sidecars trace only what their callers
 * sampled (they start no traces of their own), so a sampled trace keeps
 * every hop and an unsampled one costs no sidecar spans.
 */
function metadataFor(options: CallOptions | undefined): Metadata {
  const metadata = options?.metadata?.clone() ?? new Metadata();
  if (options?.waitForReady) metadata.setOptions({ ...metadata.getOptions(), waitForReady: true });
  const span = trace.getActiveSpan()?.spanContext();
  if (span && trace.isSpanContextValid(span) && (span.traceFlags & TraceFlags.SAMPLED) !== 0) metadata.set("x-envoy-force-trace", "true");
  return metadata;
}

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** Deadline of a unary call that gives none, in ms. @default 5000 */
  readonly timeoutMs?: number;
  /** Channel credentials. @default insecure: the sidecar does mTLS */
  readonly credentials?: ChannelCredentials;
  /** grpc-js channel options over the kit's profile, e.g. `grpc.initial_reconnect_backoff_ms`. @default none */
  readonly channelOptions?: ChannelOptions;
}

type RequestOf<M> = M extends { requestDeserialize: (value: Buffer) => infer Req } ? Req : never;
type ResponseOf<M> = M extends { responseDeserialize: (value: Buffer) => infer Res } ? Res : never;

/** A client-side stream of responses: iterate it; errors arrive as MeshError. `cancel()` ends it. */
export interface ResponseStream<Res> extends AsyncIterable<Res> {
  cancel(): void;
}

/** A typed client method, chosen by the method's streaming kind. */
export type ClientMethod<M> = M extends { requestStream: false; responseStream: false } ? (request: RequestOf<M>, options?: CallOptions) => Promise<ResponseOf<M>>
  : M extends { requestStream: false; responseStream: true } ? (request: RequestOf<M>, options?: CallOptions) => ResponseStream<ResponseOf<M>>
  : M extends { requestStream: true; responseStream: true } ? (options?: CallOptions) => ClientDuplexStream<RequestOf<M>, ResponseOf<M>>
  : never;

/** A promise-based client over a generated service definition. */
export type MeshClient<D extends ServiceDefinitionLike> = { readonly [K in keyof D]: ClientMethod<D[K]> } & {
  /** Closes the channel. */
  close(): void;
};

/**
 * The deadline (epoch ms) for a call: its own budget capped by the parent's
 * remaining time; `undefined` when neither sets one.
 */
export function deadlineFor(options: CallOptions | undefined, defaultTimeoutMs: number | undefined): number | undefined {
  const own = options?.timeoutMs ?? defaultTimeoutMs;
  const candidates = [own === undefined ? undefined : Date.now() + own, options?.parent?.deadline].filter((d): d is number => d !== undefined);
  return candidates.length === 0 ? undefined : Math.min(...candidates);
}

/** The signals that cancel a call: its own and its parent's. */
export function signalsOf(options: CallOptions | undefined): AbortSignal[] {
  return [options?.signal, options?.parent?.signal].filter((s): s is AbortSignal => s !== undefined);
}

/** Turns a client-side failure into a MeshError, preferring the abort reason when we cancelled. */
function clientError(error: ServiceError, signals: AbortSignal[]): MeshError {
  const aborted = signals.find((s) => s.aborted);
  if (error.code === Code.CANCELLED && aborted) {
    return aborted.reason instanceof MeshError ? aborted.reason : new MeshError({ code: Code.CANCELLED, reason: "SYS_CANCELLED", message: "the call was cancelled", cause: aborted.reason });
  }
  return fromServiceError(error);
}

/**
 * A typed, promise-based client for `definition` at `address`: unary calls
 * return promises, server streams are async iterables, and every call gets a
 * deadline (its own, capped by its parent's) and is cancelled with its
 * parent. Failures are MeshErrors carrying the server's details.
 */
export function createClient<D extends ServiceDefinitionLike>(definition: D, address: string, options: ClientOptions = {}): MeshClient<D> {
  // A target over several addresses spreads calls over all of them and skips the ones that are down.
  const balanced = address.startsWith("ipv4:") ? { "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) } : {};
  const client = new Client(address, options.credentials ?? credentials.createInsecure(), { ...clientChannelOptions, ...balanced, ...options.channelOptions });
  const timeoutMs = options.timeoutMs ?? 5000;
  const methods: Record<string, unknown> = { close: () => client.close() };
  for (const [key, method] of Object.entries(definition)) {
    if (!method.requestStream && !method.responseStream) methods[key] = unary(client, method, timeoutMs);
    else if (!method.requestStream) methods[key] = serverStream(client, method);
    else if (method.responseStream) methods[key] = bidiStream(client, method);
  }
  return methods as MeshClient<D>;
}

/**
 * A client for another taskmesh service, reached the mesh way: through the
 * sidecar's outbound address (`TASKMESH_UPSTREAM`), or directly when
 * `TASKMESH_UPSTREAM_<SERVICE>` is set. Throws EnvError when neither is.
 */
export function connectUpstream<D extends ServiceDefinitionLike>(definition: D, service: string, options: ClientOptions = {}, env: NodeJS.ProcessEnv = process.env): MeshClient<D> {
  return createClient(definition, upstreamAddress(service, env), options);
}

function unary(client: Client, method: MethodDefinitionLike<unknown, unknown>, timeoutMs: number) {
  return (request: unknown, options?: CallOptions): Promise<unknown> => {
    const deadline = deadlineFor(options, timeoutMs);
    const signals = signalsOf(options);
    const aborted = signals.find((s) => s.aborted);
    if (aborted) return Promise.reject(aborted.reason instanceof MeshError ? aborted.reason : MeshError.from(aborted.reason));
    if (deadline !== undefined && deadline <= Date.now()) {
      return Promise.reject(new MeshError({ code: Code.DEADLINE_EXCEEDED, reason: "SYS_DEADLINE_EXCEEDED", message: "no time left for the call" }));
    }
    return new Promise((resolve, reject) => {
      const call = client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request,
        metadataFor(options), grpcOptions(deadline), (error, response) => {
          for (const s of signals) s.removeEventListener("abort", cancel);
          if (error) reject(clientError(error, signals));
          else resolve(response);
        });
      const cancel = (): void => call.cancel();
      for (const s of signals) s.addEventListener("abort", cancel, { once: true });
    });
  };
}

function serverStream(client: Client, method: MethodDefinitionLike<unknown, unknown>) {
  return (request: unknown, options?: CallOptions): ResponseStream<unknown> => {
    const deadline = deadlineFor(options, undefined);
    const signals = signalsOf(options);
    const aborted = signals.find((s) => s.aborted);
    if (aborted) {
      // Never started: the caller is already gone.
      const reason = aborted.reason instanceof MeshError ? aborted.reason : new MeshError({ code: Code.CANCELLED, reason: "SYS_CANCELLED", message: "the call was cancelled", cause: aborted.reason });
      return { cancel: () => undefined, [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(reason) }) };
    }
    const call: ClientReadableStream<unknown> = client.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize,
      request, metadataFor(options), grpcOptions(deadline));
    const cancel = (): void => call.cancel();
    for (const s of signals) {
      if (s.aborted) cancel();
      else s.addEventListener("abort", cancel, { once: true });
    }
    return {
      cancel,
      async *[Symbol.asyncIterator]() {
        try {
          for await (const message of call) yield message;
        } catch (error) {
          throw clientError(error as ServiceError, signals);
        } finally {
          for (const s of signals) s.removeEventListener("abort", cancel);
          call.cancel();
        }
      },
    };
  };
}

function bidiStream(client: Client, method: MethodDefinitionLike<unknown, unknown>) {
  return (options?: CallOptions): ClientDuplexStream<unknown, unknown> => {
    const deadline = deadlineFor(options, undefined);
    const call = client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize,
      metadataFor(options), grpcOptions(deadline));
    for (const s of signalsOf(options)) {
      if (s.aborted) call.cancel();
      else s.addEventListener("abort", () => call.cancel(), { once: true });
    }
    return call;
  };
}
