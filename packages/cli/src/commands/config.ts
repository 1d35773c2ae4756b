import { ConfigServiceService, EventType } from "@taskmesh/contracts/gen/taskmesh/config/v1/config";
import { serviceAddress, withClient } from "./rpc.js";

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
  return withClient(ConfigServiceService, serviceAddress("config", opts.address), async (client) => {
    const { entry } = await client.get({ key });
    console.log(opts.json ? JSON.stringify({ key: entry?.key, value: entry?.value, revision: String(entry?.revision) }) : JSON.stringify(entry?.value, null, 2));
    if (!opts.json) console.error(`(revision ${entry?.revision}, version ${entry?.version})`);
    return 0;
  });
}

/** `taskmesh config put <key> <value> [--expect-revision N]`. */
export async function configPut(key: string, value: string, opts: { address?: string; expectRevision?: string }): Promise<number> {
  return withClient(ConfigServiceService, serviceAddress("config", opts.address), async (client) => {
    const expectedRevision = opts.expectRevision === undefined ? undefined : BigInt(opts.expectRevision);
    const { entry } = await client.put({ key, value: parseValue(value), expectedRevision });
    console.log(`${entry?.key} = ${JSON.stringify(entry?.value)} (revision ${entry?.revision})`);
    return 0;
  });
}

/** `taskmesh config watch [prefix]`: prints the current entries, then every change, until Ctrl-C. */
export async function configWatch(prefix: string | undefined, opts: { address?: string; afterRevision?: string }): Promise<number> {
  return withClient(ConfigServiceService, serviceAddress("config", opts.address), async (client) => {
    const request = { prefix: prefix ?? "/", afterRevision: opts.afterRevision === undefined ? undefined : BigInt(opts.afterRevision) };
    for await (const message of client.watch(request)) {
      for (const event of message.events) {
        const kind = event.type === EventType.EVENT_TYPE_DELETE ? "DELETE" : "PUT";
        console.log(`${String(event.entry?.revision).padStart(6)}  ${kind.padEnd(6)} ${event.entry?.key} ${kind === "PUT" ? JSON.stringify(event.entry?.value) : ""}`);
      }
      if (message.snapshotComplete) console.log(`------  (current as of revision ${message.revision}; live changes follow)`);
    }
    return 0;
  });
}
