import { spawn } from "node:child_process";
import { fixedPorts } from "@taskmesh/local/ports";
import { UsageError } from "@taskmesh/local/usage-error";

/** The pages of a running system that people open, by the name `taskmesh open` takes. */
export function pageUrls(ports = fixedPorts()) {
  return {
    /** The taskmesh console (tasks, workers, queues), served by the edge. */
    ui: `http://127.0.0.1:${ports.edge}/ui`,
    /** Swagger UI on the HTTP API, served by the edge. */
    docs: `http://127.0.0.1:${ports.edge}/docs`,
    /** The Jaeger UI (traces). */
    jaeger: `http://127.0.0.1:${ports.jaegerUi}`,
    /** The edge Envoy's admin page. */
    admin: `http://127.0.0.1:${ports.edgeAdmin}`,
  };
}

/** A page name of {@link pageUrls}. */
export type Page = keyof ReturnType<typeof pageUrls>;

/** What each page is, for the lines `up` prints. */
export const PAGE_TITLES: Readonly<Record<Page, string>> = { ui: "console", docs: "API docs", jaeger: "Jaeger UI", admin: "edge admin" };

/** The desktop's opener, when this machine has one. */
function opener(): string | undefined {
  if (process.platform === "darwin") return "open";
  if (process.platform === "linux" && (process.env.DISPLAY || process.env.WAYLAND_DISPLAY)) return "xdg-open";
  return undefined;
}

/**
 * `taskmesh open <page>`: prints the page's address (its port from the same
 * variables `up` reads); with `--browser`, also opens it in the desktop's
 * browser (exit 1 when there is none).
 */
export async function open(page: string, options: { browser?: boolean }): Promise<number> {
  const urls = pageUrls();
  if (!(page in urls)) throw new UsageError(`unknown page ${JSON.stringify(page)}: one of ${Object.keys(urls).join(", ")}`);
  const url = urls[page as Page];
  console.log(url);
  if (!options.browser) return 0;
  const command = opener();
  if (!command) {
    console.error("taskmesh: no desktop to open it in (no DISPLAY); open the address above in a browser");
    return 1;
  }
  return new Promise<number>((resolve) => {
    const child = spawn(command, [url], { stdio: "ignore", detached: true });
    child.once("error", (error) => {
      console.error(`taskmesh: ${command} failed: ${error.message}`);
      resolve(1);
    });
    child.once("spawn", () => {
      child.unref();
      resolve(0);
    });
  });
}
