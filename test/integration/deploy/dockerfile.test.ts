import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureHadolint } from "../../../deploy/check/tools.js";
import { IMAGE_SERVICES, IMAGE_UID } from "../../../deploy/container/layout.js";
import { pinned, ROOT } from "@taskmesh/local/provision/versions";
import { loadTopology } from "@taskmesh/mesh/topology";

// The Dockerfile linted by the pinned hadolint; its image runs every service
// of the topology by name, as a non-root user, on the pinned Node 24.

const dir = mkdtempSync(join(tmpdir(), "taskmesh-test-dockerfile-"));
const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
let hadolint: string;

function lint(text: string): { status: number | null; out: string } {
  const file = join(dir, `Dockerfile-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, text);
  const r = spawnSync(hadolint, ["--no-color", file], { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(async () => {
  hadolint = await ensureHadolint();
}, 600_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("Dockerfile", () => {
  it("passes hadolint, and a Dockerfile with an unpinned base image and a cd in RUN does not", () => {
    expect(lint(dockerfile)).toEqual({ status: 0, out: "" });
    const bad = lint(dockerfile.replace(/^ARG NODE_IMAGE=.*$/m, "ARG NODE_IMAGE=node:24") + "RUN cd /app && ls\n");
    expect(bad.status).toBe(1);
    expect(bad.out).toContain("DL3003");
  });

  it("builds on the pinned Node image and ends as the non-root user", () => {
    expect(dockerfile).toContain(`ARG NODE_IMAGE=${pinned("node").image}`);
    expect(pinned("node").image).toMatch(/^node:24\.[\d.]+-bookworm-slim$/);
    const users = [...dockerfile.matchAll(/^USER (.+)$/gm)].map((m) => m[1]);
    expect(users.at(-1)).toBe(`${IMAGE_UID}:${IMAGE_UID}`);
  });

  it("its entry point runs every service of the topology by name", () => {
    const entrypoint = readFileSync(join(ROOT, "deploy/container/entrypoint.sh"), "utf8");
    expect([...IMAGE_SERVICES].sort()).toEqual(Object.keys(loadTopology().services).sort());
    for (const service of IMAGE_SERVICES) expect(entrypoint).toMatch(new RegExp(`\\b${service}\\b.*\\)`));
  });
});
