import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ensureBuild } from "../../../scripts/build.mjs";

const ROOT = resolve(import.meta.dirname, "../../..");

describe("ensureBuild: the JavaScript the services and the CLI run", () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "taskmesh-build-"));
    writeFileSync(join(root, "package.json"), "{}");
    symlinkSync(join(ROOT, "node_modules"), join(root, "node_modules"));
    mkdirSync(join(root, "scripts"));
    writeFileSync(join(root, "scripts/build.mjs"), readFileSync(join(ROOT, "scripts/build.mjs")));
    mkdirSync(join(root, "services/x/src"), { recursive: true });
    writeFileSync(join(root, "services/x/src/main.ts"), `import { answer } from "./answer.js";\nconsole.log(answer satisfies number);\n`);
    writeFileSync(join(root, "services/x/src/answer.ts"), "export const answer: number = 41;\n");
    writeFileSync(join(root, "services/x/src/main.test.ts"), "not compiled\n");
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const edit = (file: string, text: string, at: number): void => {
    writeFileSync(join(root, file), text);
    utimesSync(join(root, file), at, at);
  };

  it("compiles each source to its own .js, tests left out, and reuses the build while nothing changes", () => {
    const dir = ensureBuild(root);
    expect(readFileSync(join(dir, "services/x/src/answer.js"), "utf8")).toContain("answer = 41");
    expect(readFileSync(join(dir, "services/x/src/main.js"), "utf8")).toContain(`from "./answer.js"`);
    expect(readdirSync(join(dir, "services/x/src")).sort()).toEqual(["answer.js", "main.js"]);
    expect(ensureBuild(root)).toBe(dir);
  });

  it("builds again after a source changes, and keeps the newest three builds and any other one a running process took", async () => {
    const dirs = [ensureBuild(root)];
    for (const [i, n] of [42, 43, 44].entries()) {
      edit("services/x/src/answer.ts", `export const answer: number = ${n};\n`, 2_000_000_000 + i);
      dirs.push(ensureBuild(root));
      expect(readFileSync(join(dirs.at(-1)!, "services/x/src/answer.js"), "utf8")).toContain(`answer = ${n}`);
    }
    expect(new Set(dirs).size).toBe(4);
    // This process took every one of them: none is pruned.
    expect(readdirSync(join(root, "build")).sort()).toEqual(dirs.map((d) => d.split("/").at(-1)).sort());
    // The processes that took the two oldest have ended, except one that took the second (this one).
    const ended = spawnSync("true").pid!;
    for (const dir of dirs) for (const mark of readdirSync(dir).filter((f) => f.startsWith(".used-by-"))) rmSync(join(dir, mark));
    writeFileSync(join(dirs[0]!, `.used-by-${ended}`), "");
    writeFileSync(join(dirs[1]!, `.used-by-${process.pid}`), "");
    edit("services/x/src/answer.ts", "export const answer: number = 45;\n", 2_000_000_010);
    const newest = ensureBuild(root);
    expect(readdirSync(join(root, "build")).sort()).toEqual([dirs[1]!, dirs[2]!, dirs[3]!, newest].map((d) => d.split("/").at(-1)).sort());
  });
});
