import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

/** The variable naming a built jaeger-ui folder for `up`. */
export const JAEGER_UI_DIR_VARIABLE = "TASKMESH_JAEGER_UI_DIR";

/**
 * The built jaeger-ui folder `TASKMESH_JAEGER_UI_DIR` names, as an absolute
 * path, or undefined when the variable is unset or empty (Jaeger then serves
 * what its binary embeds: a placeholder page for the Go-module build). A
 * folder without an `index.html` is refused, naming the variable.
 */
export function jaegerUiDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const raw = env[JAEGER_UI_DIR_VARIABLE]?.trim();
  if (!raw) return undefined;
  const dir = resolve(raw);
  if (!existsSync(join(dir, "index.html"))) {
    throw new Error(`${JAEGER_UI_DIR_VARIABLE}: ${dir} holds no index.html; expected a built jaeger-ui folder (its index.html and static/)`);
  }
  return dir;
}

/** The one line `up` prints when the Jaeger UI is the Go-module build's placeholder. */
export const JAEGER_UI_PLACEHOLDER_NOTE =
  `the Jaeger UI is a placeholder page (the Jaeger built from the Go module proxy carries no UI assets): set ${JAEGER_UI_DIR_VARIABLE} to a built jaeger-ui folder for the real one`;
