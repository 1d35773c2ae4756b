import { dirname, join } from "node:path";
import type { CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, TransportSocket, UpstreamTlsContext } from "./envoy-types.js";

/** The SDS secret holding an identity's certificate and key (in `<certsDir>/<identity>/sds-cert.yaml`). */
export const CERT_SECRET = "mesh-cert";
/** The SDS secret holding the mesh CA (in `<certsDir>/sds-ca.yaml`). */
export const CA_SECRET = "mesh-ca";

/** The files `taskmesh certs` writes under the state directory, as the generator reads them. */
export function certPaths(stateDir: string, identity: string): { caSds: string; certSds: string } {
  const certsDir = join(stateDir, "certs");
  return { caSds: join(certsDir, "sds-ca.yaml"), certSds: join(certsDir, identity, "sds-cert.yaml") };
}

/** A secret read from a file Envoy watches (its directory, so a rename-into-place rotation is seen). */
function sdsFile(name: string, path: string): SdsSecretConfig {
  return { name, sds_config: { path_config_source: { path, watched_directory: { path: dirname(path) } }, resource_api_version: "V3" } };
}

/** Where an Envoy finds its SDS files: the mesh CA's and its identity's. */
export interface SdsPaths {
  readonly caSds: string;
  readonly certSds: string;
}

/** The inbound side: TLS with the instance's identity, a client certificate required and checked against the mesh CA. */
export function downstreamTls(stateDir: string, identity: string, paths: SdsPaths = certPaths(stateDir, identity)): TransportSocket {
  const { caSds, certSds } = paths;
  const context: DownstreamTlsContext = {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    require_client_certificate: true,
    common_tls_context: {
      alpn_protocols: ["h2"],
      tls_certificate_sds_secret_configs: [sdsFile(CERT_SECRET, certSds)],
      validation_context_sds_secret_config: sdsFile(CA_SECRET, caSds),
    },
  };
  return { name: "envoy.transport_sockets.tls", typed_config: context };
}

/** The outbound side: TLS with the caller's identity; the server must present the mesh CA's certificate for `serverId`. */
export function upstreamTls(stateDir: string, identity: string, serverId: string, paths: SdsPaths = certPaths(stateDir, identity)): TransportSocket {
  const { caSds, certSds } = paths;
  const common: CommonTlsContext = {
    alpn_protocols: ["h2"],
    tls_certificate_sds_secret_configs: [sdsFile(CERT_SECRET, certSds)],
    combined_validation_context: {
      default_validation_context: { match_typed_subject_alt_names: [{ san_type: "URI", matcher: { exact: serverId } }] },
      validation_context_sds_secret_config: sdsFile(CA_SECRET, caSds),
    },
  };
  const context: UpstreamTlsContext = { "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", common_tls_context: common };
  return { name: "envoy.transport_sockets.tls", typed_config: context };
}
