export { KEEPALIVE, clientChannelOptions, serverChannelOptions } from "./channel-options.js";
export { connectUpstream, createClient, deadlineFor, signalsOf, type CallOptions, type ClientMethod, type ClientOptions, type MeshClient, type ResponseStream } from "./client.js";
export { STATUS_DETAILS_KEY, fromRpcStatus, fromServiceError, statusDetailsValue, toRpcStatus, toStatusObject } from "./error-wire.js";
export {
  Code, ERROR_DOMAIN, MeshError, classify, exhausted, invalidArgument, notFound, unavailable,
  type FieldViolation, type MeshErrorInit, type Reason, type ReasonClass,
} from "./errors.js";
export { EnvError, envSchemas, kitEnvShape, loadEnv, parseDuration, upstreamAddress, type EnvIssue } from "./env.js";
export {
  serviceNameOf,
  type BidiStreamHandler, type CallContext, type ClientStreamHandler, type HandlerFor, type MethodDefinitionLike, type Send,
  type ServerStreamHandler, type ServiceDefinitionLike, type ServiceHandlers, type UnaryHandler,
} from "./handlers.js";
export { deadlineExceeded } from "./call-context.js";
export { Violations, parseItem } from "./violations.js";
export { isUuid, isUuidV7, randomIdBytes, uuidv7 } from "./ids.js";
export { durationMs, toDuration } from "./durations.js";
export { PAGE_SIZE, decodePageToken, encodePageToken, pageSize } from "./page-token.js";
export { migrate, type Migration } from "./pg/migrate.js";
export { createPool, query, withTransaction, type PoolOptions, type TransactionOptions } from "./pg/pool.js";
export { DESCRIPTOR_SET_PATH, addReflection, splitDescriptorSet } from "./reflection.js";
export { projectRoot } from "./project-root.js";
export { MeshServer, type MeshServerOptions, type ServerState, type ShutdownOutcome } from "./server.js";
export { EXIT_CODES, onShutdownSignal, runService, serveBuilt, type BuiltService, type RunServiceOptions, type StartedService } from "./lifecycle.js";
export { untilReady } from "./readiness.js";
export { createLogger, serializeError, type Logger, type LoggerOptions } from "./log.js";
export { watchSetting, type ConfigClient, type LiveSetting, type WatchSettingOptions } from "./config-client.js";
export { CLAIMS_HEADER, SCOPES, callerSpiffeId, isScope, principalOf, requireScope, scopesOf, type AccessClaims, type Principal, type Scope } from "./auth.js";
