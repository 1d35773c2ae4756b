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

  it("builds again after a source changes, and keeps only the newest three builds", () => {
    const dirs = [ensureBuild(root)];
    for (const [i, n] of [42, 43, 44].entries()) {
      edit("services/x/src/answer.ts", `export const answer: number = ${n};\n`, 2_000_000_000 + i);
      dirs.push(ensureBuild(root));
      expect(readFileSync(join(dirs.at(-1)!, "services/x/src/answer.js"), "utf8")).toContain(`answer = ${n}`);
    }
    expect(new Set(dirs).size).toBe(4);
    expect(readdirSync(join(root, "build")).sort()).toEqual(dirs.slice(1).map((d) => d.split("/").at(-1)).sort());
  });
});
