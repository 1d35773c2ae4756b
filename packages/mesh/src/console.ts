import { join } from "node:path";
import { fileRoute, type FileBody } from "./docs.js";
import type { Route } from "./envoy-types.js";

/** The console the edge serves at `/ui`. */
export interface EdgeConsoleOptions {
  /** The built console (`build/<fingerprint>/ui/console`: index.html, console.js, console.css), as an absolute path. */
  readonly dir: string;
  /** Where the Jaeger UI is, for the link from a task to its trace (e.g. `http://127.0.0.1:16686`). */
  readonly jaegerUrl: string;
}

/** Where the console lives on the edge. */
export const CONSOLE_PATH = "/ui";

/**
 * The console, served by the edge itself (no upstream, no token for the
 * page; every API call it makes carries the user's token): the page at
 * `/ui`, its code and style, and its settings at `/ui/config.json`. Envoy
 * reads each file when it loads the config.
 */
export function consoleRoutes(options: EdgeConsoleOptions): Route[] {
  const page = { filename: join(options.dir, "index.html") };
  const file = (path: string, body: FileBody, contentType: string): Route => fileRoute("console", path, body, contentType);
  return [
    file(CONSOLE_PATH, page, "text/html; charset=utf-8"),
    file(`${CONSOLE_PATH}/`, page, "text/html; charset=utf-8"),
    file(`${CONSOLE_PATH}/console.js`, { filename: join(options.dir, "console.js") }, "text/javascript; charset=utf-8"),
    file(`${CONSOLE_PATH}/console.css`, { filename: join(options.dir, "console.css") }, "text/css; charset=utf-8"),
    file(`${CONSOLE_PATH}/config.json`, { inline_string: JSON.stringify({ jaegerUrl: options.jaegerUrl }) }, "application/json"),
  ];
}
