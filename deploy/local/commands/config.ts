import { ConfigServiceService, EventType } from "../../../gen/taskmesh/config/v1/config.js";
import { Code, createClient, MeshError } from "../../../services/kit/src/index.js";
import { readState } from "../state.js";

/** The config service to talk to: `--address`, TASKMESH_UPSTREAM_CONFIG, or the running config instance. */
function configAddress(address: string | undefined): string {
  const found = address ?? process.env.TASKMESH_UPSTREAM_CONFIG
    ?? readState()?.processes.filter((p) => p.service === "config" && p.kind === "service" && p.state === "running").map((p) => `127.0.0.1:${p.ports.app}`)[0];
  if (!found) throw new Error("no config service: start taskmesh (npm start) or pass --address host:port");
  return found;
}

/** Prints a MeshError the way grpcurl users expect: code, reason, violations. */
function report(error: unknown): number {
  const e = error instanceof MeshError ? error : MeshError.from(error);
  console.error(`${Code[e.code]} (${e.reason}): ${e.message}`);
  for (const v of e.violations) console.error(`  ${v.field}: ${v.description}`);
  for (const [k, v] of Object.entries(e.metadata)) console.error(`  ${k} = ${v}`);
  return 1;
}

/** Parses a value given on the command line: JSON when it parses, else the text as a string. */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `taskmesh config get <key>`: prints the value (JSON) and its revision. */
export async function configGet(key: string, opts: { address?: string; json?: boolean }): Promise<number> {
  const client = createClient(ConfigServiceService, configAddress(opts.address));
  try {
    const { entry } = await client.get({ key });
    console.log(opts.json ? JSON.stringify({ key: entry?.key, value: entry?.value, revision: String(entry?.revision) }) : JSON.stringify(entry?.value, null, 2));
    if (!opts.json) console.error(`(revision ${entry?.revision}, version ${entry?.version})`);
    return 0;
  } catch (error) {
    return report(error);
  } finally {
    client.close();
  }
}

/** `taskmesh config put <key> <value> [--expect-revision N]`. */
export async function configPut(key: string, value: string, opts: { address?: string; expectRevision?: string }): Promise<number> {
  const client = createClient(ConfigServiceService, configAddress(opts.address));
  try {
    const expectedRevision = opts.expectRevision === undefined ? undefined : BigInt(opts.expectRevision);
    const { entry } = await client.put({ key, value: parseValue(value), expectedRevision });
    console.log(`${entry?.key} = ${JSON.stringify(entry?.value)} (revision ${entry?.revision})`);
    return 0;
  } catch (error) {
    return report(error);
  } finally {
    client.close();
  }
}

/** `taskmesh config watch [prefix]`: prints the current entries, then every change, until Ctrl-C. */
export async function configWatch(prefix: string | undefined, opts: { address?: string; afterRevision?: string }): Promise<number> {
  const client = createClient(ConfigServiceService, configAddress(opts.address));
  try {
    const request = { prefix: prefix ?? "/", afterRevision: opts.afterRevision === undefined ? undefined : BigInt(opts.afterRevision) };
    for await (const message of client.watch(request)) {
      for (const event of message.events) {
        const kind = event.type === EventType.EVENT_TYPE_DELETE ? "DELETE" : "PUT";
        console.log(`${String(event.entry?.revision).padStart(6)}  ${kind.padEnd(6)} ${event.entry?.key} ${kind === "PUT" ? JSON.stringify(event.entry?.value) : ""}`);
      }
      if (message.snapshotComplete) console.log(`------  (current as of revision ${message.revision}; live changes follow)`);
    }
    return 0;
  } catch (error) {
    return report(error);
  } finally {
    client.close();
  }
}
