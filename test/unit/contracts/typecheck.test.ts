import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";

const root = join(import.meta.dirname, "../../..");

// Tests run through tsx, which strips types without checking them: this is where type errors fail the build.
it.each([
  ["the whole tree", "."],
  ["the console (browser code, DOM types)", "ui/console"],
])("%s typechecks (tsc, strict)", (_, project) => {
  let output = "";
  try {
    execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", project], { cwd: root, stdio: "pipe" });
  } catch (error) {
    output = String((error as { stdout?: Buffer }).stdout ?? error);
  }
  expect(output).toBe("");
}, 60_000);
