/**
 * The errors the edge answers itself (Envoy local replies), in the shape
 * every other error of the mesh has.
 *
 * - gRPC callers (content-type `application/grpc…`, gRPC-Web included) get
 *   a gRPC status. Refused tokens also carry `grpc-status-details-bin` with
 *   ErrorInfo; every other local reply is left as Envoy makes it (a rate
 *   limited call gets the ratelimit service's details).
 * - HTTP callers (anything else, and every call the JSON transcoder turned
 *   into gRPC) get `google.rpc.Status` as JSON, exactly as the transcoder
 *   prints a service's error: `{"code", "message", "details": [ErrorInfo
 *   {reason, domain "taskmesh.dev", metadata}, RetryInfo…]}`, with
 *   `content-type: application/json` and the HTTP status Envoy answered
 *   (a refused token's 403 becomes 401).
 */

import { Code, ERROR_DOMAIN, MeshError, type Reason } from "@taskmesh/kit/errors";
import { statusDetailsValue } from "@taskmesh/kit/error-wire";

/** Envoy's `local_reply_config`: mappers are tried in order, the first whose filter matches applies. */
export interface LocalReplyConfig {
  readonly mappers: readonly object[];
}

const TYPE_PREFIX = "type.googleapis.com/";
const MISSING_TOKEN = "an access token is required (authorization: Bearer <token>)";
const INVALID_TOKEN = "the access token is invalid, expired, or not for this audience";

const statusCode = (op: "EQ" | "GE", code: number) => ({ status_code_filter: { comparison: { op, value: { default_value: code, runtime_key: `edge.local_reply.${op === "EQ" ? "" : "ge_"}${code}` } } } });
const status = (code: number) => statusCode("EQ", code);
const all = (...filters: object[]) => (filters.length === 1 ? filters[0]! : { and_filter: { filters } });
const noAuthorization = { header_filter: { header: { name: "authorization", present_match: false } } };
/**
 * A gRPC caller: a gRPC content-type that the transcoder did not set. The
 * transcoder rewrites a JSON call's content-type to `application/grpc` and
 * keeps the caller's path in `x-envoy-original-path` (no edge route rewrites
 * paths), so its 400s, and the 429s and 503s that come after it, are
 * answered to an HTTP caller.
 */
const grpcCaller = all(
  { header_filter: { header: { name: "content-type", string_match: { prefix: "application/grpc" } } } },
  { header_filter: { header: { name: "x-envoy-original-path", present_match: false } } },
);

function statusDetails(reason: "AUTH_MISSING_TOKEN" | "AUTH_INVALID_TOKEN", message: string): string {
  return statusDetailsValue(new MeshError({ code: Code.UNAUTHENTICATED, reason, message }));
}

/** One HTTP caller's error: what its JSON says (format operators allowed in the strings). */
interface JsonError {
  readonly code: Code;
  readonly reason: Reason;
  readonly message: string;
  readonly metadata?: Readonly<Record<string, string>>;
  /** RetryInfo's `retry_delay` as protobuf JSON prints a Duration (`"5s"`). */
  readonly retryDelay?: string;
}

/** `google.rpc.Status` as the transcoder prints a service's (`always_print_primitive_fields`: an empty `metadata` is `{}`). */
function statusJson(e: JsonError): object {
  const details: object[] = [{ "@type": `${TYPE_PREFIX}google.rpc.ErrorInfo`, reason: e.reason, domain: ERROR_DOMAIN, metadata: { ...e.metadata } }];
  if (e.retryDelay !== undefined) details.push({ "@type": `${TYPE_PREFIX}google.rpc.RetryInfo`, retryDelay: e.retryDelay });
  return { code: e.code, message: e.message, details };
}

/** A mapper for HTTP callers: every gRPC caller has stopped at an earlier one. */
function jsonMapper(filter: object, error: JsonError, rewriteTo?: number): object {
  return { filter, ...(rewriteTo !== undefined ? { status_code: rewriteTo } : {}), body_format_override: { json_format: statusJson(error) } };
}

/**
 * The edge's local replies. Refused tokens (401 from `jwt_authn`, or 403
 * for a token of another audience or issuer; only `jwt_authn` answers 403 at
 * the edge) are always 401 UNAUTHENTICATED with AUTH_MISSING_TOKEN (no
 * `authorization` header) or AUTH_INVALID_TOKEN. For HTTP callers also:
 * a request the transcoder cannot translate (400 INVALID_ARGUMENT, with its
 * parser's message), a path no route takes (404), rate limited (429
 * RESOURCE_EXHAUSTED with RetryInfo from `retry-after`), the service
 * unreachable (503 or 502 UNAVAILABLE), the route's timeout (504
 * DEADLINE_EXCEEDED), and anything else as UNKNOWN. Used whether or not
 * tokens or rate limits are on.
 */
export function edgeLocalReplies(): LocalReplyConfig {
  const grpcDetails = (reason: "AUTH_MISSING_TOKEN" | "AUTH_INVALID_TOKEN", message: string) => ({
    headers_to_add: [{ header: { key: "grpc-status-details-bin", value: statusDetails(reason, message) }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" }],
  });
  const unauthenticated = (reason: Reason, message: string): JsonError => ({ code: Code.UNAUTHENTICATED, reason, message });
  return {
    mappers: [
      { filter: all(status(401), noAuthorization, grpcCaller), ...grpcDetails("AUTH_MISSING_TOKEN", MISSING_TOKEN) },
      { filter: all(status(401), grpcCaller), ...grpcDetails("AUTH_INVALID_TOKEN", INVALID_TOKEN) },
      // jwt_authn answers 403 for a token of another audience or issuer: it is not a valid token here either.
      { filter: all(status(403), grpcCaller), status_code: 401, ...grpcDetails("AUTH_INVALID_TOKEN", INVALID_TOKEN) },
      // Every other local reply to a gRPC caller stays as Envoy makes it (no rewrite; the mappers below are not tried).
      { filter: grpcCaller },

      jsonMapper(all(status(401), noAuthorization), unauthenticated("AUTH_MISSING_TOKEN", MISSING_TOKEN)),
      jsonMapper(status(401), unauthenticated("AUTH_INVALID_TOKEN", INVALID_TOKEN)),
      jsonMapper(status(403), unauthenticated("AUTH_INVALID_TOKEN", INVALID_TOKEN), 401),
      // The transcoder's 400: a body that is not JSON, or a field or query parameter that does not fit the method.
      jsonMapper(status(400), { code: Code.INVALID_ARGUMENT, reason: "VAL_MALFORMED_REQUEST", message: "%LOCAL_REPLY_BODY%" }),
      // The catch-all route: no exposed method has this path. A gRPC caller gets UNIMPLEMENTED for
      // it (Envoy maps 404 so, as gRPC's HTTP-to-status table does), which is what gRPC calls a
      // method the server does not have; NOT_FOUND would say a resource named in the call is missing.
      jsonMapper(status(404), {
        code: Code.UNIMPLEMENTED, reason: "VAL_UNKNOWN_ROUTE", message: "%REQ(:method)% %PATH(NQ)% is not exposed by the edge",
        metadata: { method: "%REQ(:method)%", path: "%PATH(NQ)%" },
      }),
      // The ratelimit filter's 429 carries the service's `retry-after` (whole seconds, at least 1). The
      // limit's name and descriptor (ErrorInfo metadata for gRPC callers) reach an HTTP caller only in
      // `x-ratelimit-limit` and `grpc-status-details-bin`, and a refusal while Redis is down (failure
      // mode closed, RATE_LIMITER_UNAVAILABLE there) reads RATE_LIMITED here: the edge sees the same
      // headers for both and cannot decode the details.
      jsonMapper(status(429), {
        code: Code.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED", message: "rate limit exceeded; retry in %RESP(retry-after)% s", retryDelay: "%RESP(retry-after)%s",
      }),
      // The router's 503 (no healthy host, connection refused or reset, circuit breaker open) and 502
      // (an answer from it that could not be used); both are UNAVAILABLE for a gRPC caller.
      jsonMapper({ or_filter: { filters: [status(503), status(502)] } }, {
        code: Code.UNAVAILABLE, reason: "EXT_DEPENDENCY_UNAVAILABLE", message: "%UPSTREAM_CLUSTER% is unavailable; retry shortly",
        metadata: { service: "%UPSTREAM_CLUSTER%" }, retryDelay: "1s",
      }),
      // The route's timeout passed: a transcoded call has no deadline of its own, so this is its
      // deadline. (A gRPC caller's own grpc-timeout usually runs out first; when the route's does,
      // Envoy answers it UNAVAILABLE, by gRPC's HTTP-to-status table.)
      jsonMapper(status(504), { code: Code.DEADLINE_EXCEEDED, reason: "SYS_DEADLINE_EXCEEDED", message: "the deadline was exceeded" }),
      // Any other error Envoy answers itself (413 too large, 431 headers too large, …): UNKNOWN, as Envoy maps it for gRPC callers.
      jsonMapper(statusCode("GE", 400), { code: Code.UNKNOWN, reason: "SYS_EDGE_ERROR", message: "%LOCAL_REPLY_BODY%" }),
    ],
  };
}
