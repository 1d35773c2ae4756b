import type { AccessLog, Bootstrap, Cluster, Tracing } from "./envoy-types.js";
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
 */
export function tracing(serviceName: string, samplingPercent = 100): Tracing {
  return {
    random_sampling: { value: samplingPercent },
    spawn_upstream_span: true,
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
 * or two under load, and keep a quiet trace out of Jaeger for seconds. The
 * admin layer keeps `/runtime_modify` working.
 */
export function runtime(): NonNullable<Bootstrap["layered_runtime"]> {
  return {
    layers: [
      {
        name: "static",
        static_layer: {
          "tracing.opentelemetry.min_flush_spans": TRACE_EXPORT_BATCH,
          "tracing.opentelemetry.flush_interval_ms": TRACE_EXPORT_INTERVAL_MS,
        },
      },
      { name: "admin", admin_layer: {} },
    ],
  };
}

/** The OTLP collector on 127.0.0.1 (Jaeger's OTLP gRPC port). */
export function otlpCluster(port: number): Cluster {
  return staticCluster({ name: OTLP_CLUSTER, endpoints: [port], lbPolicy: "ROUND_ROBIN" });
}

/** One JSON line per request on stdout, with the trace id so a log line leads to its trace. */
export function accessLog(listener: string): AccessLog[] {
  return [{
    name: "envoy.access_loggers.stdout",
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
