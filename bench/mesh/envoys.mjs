// The extra Envoys bench:mesh starts beside `up`'s, to measure one thing at a time:
//
//   node bench/mesh/envoys.mjs bare <app port> <port> <admin port> <out.yaml>
//     one bare Envoy in front of an app: h2c on both sides, the router and
//     nothing else (no TLS, tracing, access log or other filter): what one
//     Envoy hop costs on this machine, the floor under every mesh path.
//   node bench/mesh/envoys.mjs no-jwt <edge.yaml> <port> <admin port> <out.yaml>
//     the run's own edge config on other ports, without its jwt_authn filter:
//     (c) with the token check off.
import { readFileSync, writeFileSync } from "node:fs";
import YAML from "yaml";

const [kind, ...args] = process.argv.slice(2);

function bare(appPort, port, adminPort) {
  const h2 = { "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", explicit_http_config: { http2_protocol_options: {} } };
  return {
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: adminPort } } },
    static_resources: {
      listeners: [{
        name: "bare",
        address: { socket_address: { address: "127.0.0.1", port_value: port } },
        filter_chains: [{
          filters: [{
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              stat_prefix: "bare",
              codec_type: "HTTP2",
              route_config: { name: "bare", virtual_hosts: [{ name: "bare", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: "app", timeout: "0s" } }] }] },
              http_filters: [{ name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }],
            },
          }],
        }],
      }],
      clusters: [{
        name: "app",
        type: "STATIC",
        typed_extension_protocol_options: { "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2 },
        load_assignment: { cluster_name: "app", endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: appPort } } } }] }] },
      }],
    },
  };
}

function noJwt(edgeFile, port, adminPort) {
  const config = YAML.parse(readFileSync(edgeFile, "utf8"));
  config.admin.address.socket_address.port_value = adminPort;
  const [listener] = config.static_resources.listeners;
  listener.address.socket_address.port_value = port;
  const manager = listener.filter_chains[0].filters[0].typed_config;
  const before = manager.http_filters.length;
  manager.http_filters = manager.http_filters.filter((f) => f.name !== "envoy.filters.http.jwt_authn");
  if (manager.http_filters.length !== before - 1) throw new Error(`${edgeFile}: no jwt_authn filter to take out`);
  return config;
}

if (kind === "bare") {
  const [appPort, port, adminPort, out] = args;
  writeFileSync(out, YAML.stringify(bare(Number(appPort), Number(port), Number(adminPort))));
} else if (kind === "no-jwt") {
  const [edgeFile, port, adminPort, out] = args;
  writeFileSync(out, YAML.stringify(noJwt(edgeFile, Number(port), Number(adminPort))));
} else {
  console.error("usage: envoys.mjs bare <app port> <port> <admin port> <out.yaml> | no-jwt <edge.yaml> <port> <admin port> <out.yaml>");
  process.exit(2);
}
