import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";

const root = join(import.meta.dirname, "../../..");

// Tests run through tsx, which strips types without checking them: this is where type errors fail the build.
it("the whole tree typechecks (tsc, strict)", () => {
  let output = "";
  try {
    execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", "."], { cwd: root, stdio: "pipe" });
  } catch (error) {
    output = String((error as { stdout?: Buffer }).stdout ?? error);
  }
  expect(output).toBe("");
}, 60_000);
