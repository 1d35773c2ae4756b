import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { WorkerServiceService } from "@taskmesh/contracts/gen/taskmesh/coordinator/v1/worker_service";
import { createClient } from "@taskmesh/kit/client";
import { createLogger } from "@taskmesh/kit/log";
import { isAgent, type AgentDefinition } from "./agent.js";
import { Worker as Runtime } from "./runtime.js";

/** A mesh identity's credentials (PEM), as `taskmesh certs --json` lists them: the CA and the `worker` identity's certificate and key. */
export interface MeshTls {
  readonly ca: string | Buffer;
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** The SPIFFE ID the server must present. @default "spiffe://taskmesh.local/coordinator" */
  readonly serverId?: string;
}

/** What a {@link Worker} runs and where it connects. */
export interface WorkerConfig {
  /**
   * A coordinator's WorkerService, `host:port`. Under `taskmesh up`: a
   * coordinator sidecar's inbound port (`taskmesh status --json`), with
   * {@link tls}; or a coordinator itself where no mesh stands between.
   */
  readonly address: string;
  /** The agents it runs (made with {@link defineAgent}), each capability once. */
  readonly agents: AgentDefinition | readonly AgentDefinition[];
  /** mTLS as a mesh identity; plaintext without it. */
  readonly tls?: MeshTls;
  /** Stable for the life of the process. @default a random UUID */
  readonly workerId?: string;
  /** @default `worker@<hostname>` */
  readonly name?: string;
  /** The most tasks run at once, 1..1000. @default 8 */
  readonly concurrency?: number;
  readonly labels?: Readonly<Record<string, string>>;
  /** @default "info" (JSON lines on stdout) */
  readonly logLevel?: "trace" | "debug" | "info" | "warn" | "error" | "silent";
}

/** Channel credentials that present `tls`'s identity and accept only a server holding `serverId` (a SPIFFE URI SAN). */
function meshCredentials(tls: MeshTls): ChannelCredentials {
  const serverId = tls.serverId ?? "spiffe://taskmesh.local/coordinator";
  const pem = (value: string | Buffer): Buffer => (typeof value === "string" ? Buffer.from(value) : value);
  return credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert), {
    checkServerIdentity: (host: string, cert: PeerCertificate) => {
      const uris = (cert.subjectaltname ?? "").split(/,\s*/).filter((san) => san.startsWith("URI:")).map((san) => san.slice(4));
      return uris.includes(serverId) ? undefined : (checkServerIdentity(host, cert) ?? new Error(`the server is not ${serverId} (it holds ${uris.join(", ") || "no URI"})`));
    },
  });
}

/**
 * A worker in your own process: it connects to a coordinator, registers
 * the agents' capabilities (submittable at once), runs what it is
 * assigned, reconnects after a failure keeping what it holds, and drains on
 * {@link drain}. The same runtime as taskmesh's own workers.
 *
 * ```ts
 * const worker = new Worker({ address, tls, agents: [shout] });
 * await worker.start();
 * process.once("SIGTERM", () => void worker.drain());
 * ```
 */
export class Worker {
  private readonly runtime: Runtime;
  private readonly close: () => void;

  constructor(config: WorkerConfig) {
    const agents = Array.isArray(config.agents) ? [...config.agents] : [config.agents as AgentDefinition];
    const bad = agents.findIndex((a) => !isAgent(a));
    if (agents.length === 0 || bad >= 0) throw new TypeError(`agents: ${agents.length === 0 ? "none given" : `item ${bad} is not an agent`}: make each with defineAgent`);
    const client = createClient(WorkerServiceService, config.address, config.tls ? { credentials: meshCredentials(config.tls) } : {});
    this.close = () => client.close();
    this.runtime = new Runtime({
      client, agents, logger: createLogger({ service: "worker", level: config.logLevel ?? "info" }),
      ...(config.workerId ? { workerId: config.workerId } : {}), ...(config.name ? { name: config.name } : {}),
      ...(config.concurrency ? { maxConcurrency: config.concurrency } : {}), ...(config.labels ? { labels: config.labels } : {}),
      version: "sdk",
    });
  }

  /** Tasks running now. */
  get running(): number {
    return this.runtime.running;
  }

  /** Connects and resolves once a coordinator has registered it (it keeps trying until then, or until `signal` aborts). */
  async start(signal?: AbortSignal): Promise<void> {
    this.runtime.start();
    await this.runtime.whenRegistered(signal);
  }

  /** Takes no new task, lets those running finish within `graceMs` (and hands back the rest), then disconnects. */
  async drain(graceMs = 10_000): Promise<void> {
    try {
      await this.runtime.drain(graceMs, "drain");
    } finally {
      this.close();
    }
  }
}
