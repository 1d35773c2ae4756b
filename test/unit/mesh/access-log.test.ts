import { describe, expect, it } from "vitest";
import { accessLogOptions } from "@taskmesh/local/plan";
import { buildMesh, loadTopology } from "@taskmesh/mesh";
import type { AccessLogOptions } from "../../../packages/mesh/src/observability.js";

/** Every access log of every listener of a small mesh generated with `accessLog`, by Envoy and listener. */
function accessLogs(accessLog?: AccessLogOptions) {
  const topology = loadTopology();
  const mesh = buildMesh({
    topology, stateDir: "/tmp/state", otlpGrpcPort: 4317, ...(accessLog ? { accessLog } : {}),
    instances: [
      { name: "coordinator-0", service: "coordinator", appPort: 1, inboundPort: 2, outboundPort: 3, adminPort: 4 },
      { name: "worker-0", service: "worker", appPort: 5, inboundPort: 6, outboundPort: 7, adminPort: 8 },
    ],
    edge: { descriptorSetPath: "/abs/gen/descriptor.binpb" },
  });
  return mesh.flatMap((envoy) => envoy.config.static_resources.listeners.map((l) => ({
    where: `${envoy.name}/${l.name}`, logs: l.filter_chains[0]!.filters[0]!.typed_config.access_log ?? [],
  })));
}

describe("access logs", () => {
  it("by default, every listener of every Envoy logs only failed requests (HTTP >= 400, a response flag, a gRPC status other than OK) and slow ones (>= 250 ms)", () => {
    const all = accessLogs();
    expect(all.map((a) => a.where)).toEqual(["coordinator-0/inbound", "coordinator-0/outbound", "worker-0/inbound", "worker-0/outbound", "edge/edge"]);
    for (const { where, logs } of all) {
      expect(logs, where).toHaveLength(1);
      expect(logs[0]!.typed_config.log_format.json_format, where).toMatchObject({ trace_id: "%TRACE_ID%", grpc_status: "%GRPC_STATUS%", duration_ms: "%DURATION%" });
      expect(logs[0]!.filter, where).toEqual({
        or_filter: {
          filters: [
            { status_code_filter: { comparison: { op: "GE", value: { default_value: 400, runtime_key: "access_log.min_status" } } } },
            { response_flag_filter: {} },
            {
              and_filter: {
                filters: [
                  { header_filter: { header: { name: "content-type", string_match: { prefix: "application/grpc" } } } },
                  { grpc_status_filter: { statuses: ["OK"], exclude: true } },
                ],
              },
            },
            { duration_filter: { comparison: { op: "GE", value: { default_value: 250, runtime_key: "access_log.slow_ms" } } } },
          ],
        },
      });
    }
  });

  it("logs every request with all, and takes the slow threshold given", () => {
    for (const { where, logs } of accessLogs({ all: true })) expect(logs[0]!.filter, where).toBeUndefined();
    const slow = accessLogs({ slowMs: 1000 })[0]!.logs[0]!.filter as { or_filter: { filters: object[] } };
    expect(slow.or_filter.filters.at(-1)).toEqual({ duration_filter: { comparison: { op: "GE", value: { default_value: 1000, runtime_key: "access_log.slow_ms" } } } });
    expect(() => accessLogs({ slowMs: 2.5 })).toThrow(/slowMs: expected whole milliseconds/);
  });

  it("reads TASKMESH_ACCESS_LOG and TASKMESH_ACCESS_LOG_SLOW for up", () => {
    expect(accessLogOptions({})).toEqual({ all: false });
    expect(accessLogOptions({ TASKMESH_ACCESS_LOG: "all" })).toEqual({ all: true });
    expect(accessLogOptions({ TASKMESH_ACCESS_LOG: "failed-or-slow", TASKMESH_ACCESS_LOG_SLOW: "1s" })).toEqual({ all: false, slowMs: 1000 });
    expect(accessLogOptions({ TASKMESH_ACCESS_LOG_SLOW: "100ms" })).toEqual({ all: false, slowMs: 100 });
    expect(() => accessLogOptions({ TASKMESH_ACCESS_LOG: "errors" })).toThrow(/TASKMESH_ACCESS_LOG: expected all or failed-or-slow, got "errors"/);
    expect(() => accessLogOptions({ TASKMESH_ACCESS_LOG_SLOW: "soon" })).toThrow(/TASKMESH_ACCESS_LOG_SLOW: expected a duration/);
  });
});
