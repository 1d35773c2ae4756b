import type { Metadata } from "@grpc/grpc-js";
import type { Logger } from "pino";

/** What every handler gets besides its request. */
export interface CallContext {
  /** The full method path, e.g. `/taskmesh.config.v1.ConfigService/Get`. */
  readonly method: string;
  /** The caller's metadata. */
  readonly metadata: Metadata;
  /**
   * Aborted when the caller cancels, the call's deadline passes, or the
   * server stops waiting for it at shutdown. Pass it to Postgres, Redis,
   * Kafka and downstream calls.
   */
  readonly signal: AbortSignal;
  /** The call's deadline in epoch milliseconds, when the caller set one. */
  readonly deadline: number | undefined;
  /** The caller's address. */
  readonly peer: string;
  /** A logger bound to this call. */
  readonly log: Logger;
}

/** Sends one message on a response stream; resolves once the stream can take more (backpressure). */
export type Send<Res> = (message: Res) => Promise<void>;

/** A unary handler. */
export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;
/** A server-streaming handler: sends with `send`, returns when the stream is complete. */
export type ServerStreamHandler<Req, Res> = (request: Req, send: Send<Res>, ctx: CallContext) => Promise<void>;
/** A client-streaming handler: reads the requests, returns the one response. */
export type ClientStreamHandler<Req, Res> = (requests: AsyncIterable<Req>, ctx: CallContext) => Promise<Res>;
/** A bidirectional-streaming handler. */
export type BidiStreamHandler<Req, Res> = (requests: AsyncIterable<Req>, send: Send<Res>, ctx: CallContext) => Promise<void>;

/** The shape of one method in a ts-proto grpc-js service definition. */
export interface MethodDefinitionLike<Req, Res> {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestSerialize: (value: Req) => Buffer;
  readonly requestDeserialize: (value: Buffer) => Req;
  readonly responseSerialize: (value: Res) => Buffer;
  readonly responseDeserialize: (value: Buffer) => Res;
}

/** A ts-proto grpc-js service definition (`XxxService` in packages/contracts/gen/). */
export type ServiceDefinitionLike = { readonly [method: string]: MethodDefinitionLike<any, any> };

type RequestOf<M> = M extends { requestDeserialize: (value: Buffer) => infer Req } ? Req : never;
type ResponseOf<M> = M extends { responseDeserialize: (value: Buffer) => infer Res } ? Res : never;

/** The handler a method of a generated service definition needs, chosen by its streaming kind. */
export type HandlerFor<M> = M extends { requestStream: false; responseStream: false } ? UnaryHandler<RequestOf<M>, ResponseOf<M>>
  : M extends { requestStream: false; responseStream: true } ? ServerStreamHandler<RequestOf<M>, ResponseOf<M>>
  : M extends { requestStream: true; responseStream: false } ? ClientStreamHandler<RequestOf<M>, ResponseOf<M>>
  : BidiStreamHandler<RequestOf<M>, ResponseOf<M>>;

/** Typed handlers for every method of a generated service definition. */
export type ServiceHandlers<D extends ServiceDefinitionLike> = { readonly [K in keyof D]: HandlerFor<D[K]> };

/** The full service name of a generated definition, e.g. `taskmesh.config.v1.ConfigService`. */
export function serviceNameOf(definition: ServiceDefinitionLike): string {
  const first = Object.values(definition)[0];
  if (!first) throw new TypeError("a service definition without methods");
  return first.path.slice(1, first.path.lastIndexOf("/"));
}
