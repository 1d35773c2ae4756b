import type { AccessLog, AccessLogFilter, Bootstrap, Cluster, RuntimeLayer, Tracing } from "./envoy-types.js";
import { staticCluster } from "./clusters.js";

/** The cluster every Envoy's tracer exports spans to. */
export const OTLP_CLUSTER = "otlp";

/**
 * The OpenTelemetry tracer of an HTTP connection manager: spans go over
 * OTLP/gRPC to the `otlp` cluster, named by an explicit `service_name`
 * (envoy#22472); context travels as W3C `traceparent`.
 *
 * `samplingPercent` is the share of requests without a tracing decision
 * that this Envoy starts a trace for: the edge's is the mesh's sampling
 * rate; sidecars take 0 and trace what arrives decided — from another
 * Envoy (the decision rides in `x-request-id`) or from an app whose span is
 * sampled (the kit's clients then send `x-envoy-force-trace`).
 *
 * `upstreamSpans`: a second span per request for the call upstream (which
 * replica, how long it took), where the upstream is another instance; a
 * sidecar's inbound listener has none, since its upstream is the local app,
 * whose own server span is that call.
 */
export function tracing(serviceName: string, samplingPercent = 100, upstreamSpans = true): Tracing {
  return {
    random_sampling: { value: samplingPercent },
    spawn_upstream_span: upstreamSpans,
    provider: {
      name: "envoy.tracers.opentelemetry",
      typed_config: {
        "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
        grpc_service: { envoy_grpc: { cluster_name: OTLP_CLUSTER }, timeout: "1s" },
        service_name: serviceName,
      },
    },
  };
}

/** Spans an Envoy buffers before it exports them in one OTLP call. */
export const TRACE_EXPORT_BATCH = 512;
/** The longest a finished span waits for its export, in ms. */
export const TRACE_EXPORT_INTERVAL_MS = 1000;

/**
 * The runtime of every Envoy: its tracer exports in batches of
 * {@link TRACE_EXPORT_BATCH} spans or every {@link TRACE_EXPORT_INTERVAL_MS}.
 * Envoy's defaults (every 5 spans, or 5 s) make one export call per request
 * or two under load, and keep a quiet trace out of Jaeger for seconds.
 * `discovered` layers (RTDS) come over the static one; the admin layer, last,
 * keeps `/runtime_modify` working over both.
 */
export function runtime(discovered: readonly RuntimeLayer[] = []): NonNullable<Bootstrap["layered_runtime"]> {
  return {
    layers: [
      {
        name: "static",
        static_layer: {
          "tracing.opentelemetry.min_flush_spans": TRACE_EXPORT_BATCH,
          "tracing.opentelemetry.flush_interval_ms": TRACE_EXPORT_INTERVAL_MS,
        },
      },
      ...discovered,
      { name: "admin", admin_layer: {} },
    ],
  };
}

/** The OTLP collector (Jaeger's OTLP gRPC port), on 127.0.0.1 unless `address` (an IP or a host name) is given. */
export function otlpCluster(port: number, address?: string): Cluster {
  return staticCluster({ name: OTLP_CLUSTER, endpoints: [address ? { address, port } : port], lbPolicy: "ROUND_ROBIN" });
}

/** Which requests every Envoy of the mesh writes an access-log line for. */
export interface AccessLogOptions {
  /** Log every request (TASKMESH_ACCESS_LOG=all under up), not only the failed and slow ones. @default false */
  readonly all?: boolean;
  /** A request that lasted at least this long is logged even when it succeeded, in ms (TASKMESH_ACCESS_LOG_SLOW under up). @default 250 */
  readonly slowMs?: number;
}

/**
 * The default slow threshold, in ms: above the mesh's tail under full load
 * on the 2-core development machine (bench:mesh p99 up to ~90 ms at 50
 * connections), so a slow line is an exception rather than the tail, and
 * below what a person waiting notices.
 */
export const ACCESS_LOG_SLOW_MS = 250;

/** Runtime keys of the filter's thresholds: `/runtime_modify?access_log.slow_ms=50` changes one live. */
export const ACCESS_LOG_RUNTIME = { slowMs: "access_log.slow_ms", minStatus: "access_log.min_status" } as const;

/** {@link AccessLogOptions} with defaults filled, frozen. */
export function accessLogConfig(options: AccessLogOptions = {}): Readonly<Required<AccessLogOptions>> {
  const slowMs = options.slowMs ?? ACCESS_LOG_SLOW_MS;
  if (!Number.isInteger(slowMs) || slowMs < 0 || slowMs > 0xffff_ffff) throw new Error(`access log slowMs: expected whole milliseconds, got ${slowMs}`);
  return Object.freeze({ all: options.all ?? false, slowMs });
}

/**
 * The default filter: a request is logged when it failed or was slow.
 * Failed: an HTTP status of 400 or more (what an HTTP caller sees, and
 * what a gRPC caller sees from RBAC or a missing route), any response flag
 * (no healthy upstream, reset, timeout, downstream disconnect…), or, for a
 * gRPC request, a grpc-status other than OK. The gRPC test is limited to
 * requests with a gRPC content type because Envoy infers a status from the
 * HTTP code when there is no grpc-status, and a plain 200 becomes UNKNOWN.
 * Slow: lasted `slowMs` or more (a stream ends past it, so each stream is
 * logged once when it ends).
 */
export function accessLogFilter(slowMs: number): AccessLogFilter {
  return {
    or_filter: {
      filters: [
        { status_code_filter: { comparison: { op: "GE", value: { default_value: 400, runtime_key: ACCESS_LOG_RUNTIME.minStatus } } } },
        { response_flag_filter: {} },
        {
          and_filter: {
            filters: [
              { header_filter: { header: { name: "content-type", string_match: { prefix: "application/grpc" } } } },
              { grpc_status_filter: { statuses: ["OK"], exclude: true } },
            ],
          },
        },
        { duration_filter: { comparison: { op: "GE", value: { default_value: slowMs, runtime_key: ACCESS_LOG_RUNTIME.slowMs } } } },
      ],
    },
  };
}

/**
 * One JSON line on stdout per failed or slow request (see
 * {@link accessLogFilter}), or per request with `all`, with the trace id so
 * a log line leads to its trace.
 */
export function accessLog(listener: string, options: AccessLogOptions = {}): AccessLog[] {
  const { all, slowMs } = accessLogConfig(options);
  return [{
    name: "envoy.access_loggers.stdout",
    ...(all ? {} : { filter: accessLogFilter(slowMs) }),
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
      log_format: {
        json_format: {
          time: "%START_TIME%",
          listener,
          trace_id: "%TRACE_ID%",
          request_id: "%REQ(X-REQUEST-ID)%",
          method: "%REQ(:METHOD)%",
          path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
          protocol: "%PROTOCOL%",
          status: "%RESPONSE_CODE%",
          grpc_status: "%GRPC_STATUS%",
          flags: "%RESPONSE_FLAGS%",
          duration_ms: "%DURATION%",
          upstream_host: "%UPSTREAM_HOST%",
          upstream_cluster: "%UPSTREAM_CLUSTER%",
          peer: "%DOWNSTREAM_PEER_URI_SAN%",
          bytes_received: "%BYTES_RECEIVED%",
          bytes_sent: "%BYTES_SENT%",
        },
      },
    },
  }];
}
