import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * A secret kept in a file (mode 0600): generated on first use, so none is
 * ever committed, and the same on every later start (e.g. the password a
 * Postgres cluster was initialised with).
 */
export function localSecret(file: string, bytes = 18, encoding: "base64url" | "base64" = "base64url"): string {
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const secret = randomBytes(bytes).toString(encoding);
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/** Ports handed out for listeners: below Linux's default ephemeral range (32768–60999), so no outgoing connection's local port takes one between its choice and its bind. */
const LISTEN_PORTS = { min: 20_000, max: 32_767 } as const;
const handedOut = new Set<number>();

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * A port free on 127.0.0.1 now, for a listener started soon after: picked
 * at random below the ephemeral range (where the kernel also picks the
 * local ports of outgoing connections, which made a chosen port taken by
 * the time its server bound it), never the same twice in this process.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LISTEN_PORTS.min + Math.floor(Math.random() * (LISTEN_PORTS.max - LISTEN_PORTS.min + 1));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port found in ${LISTEN_PORTS.min}..${LISTEN_PORTS.max}`);
}
