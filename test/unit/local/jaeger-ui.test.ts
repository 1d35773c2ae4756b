import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { jaegerConfig, jaegerUiDir } from "@taskmesh/local/provision/jaeger";

describe("the Jaeger UI folder (TASKMESH_JAEGER_UI_DIR)", () => {
  const dir = mkdtempSync(join(tmpdir(), "taskmesh-jaeger-ui-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is taken when it holds an index.html, as an absolute path; unset or empty means none", () => {
    writeFileSync(join(dir, "index.html"), "<!doctype html><title>Jaeger UI</title>");
    expect(jaegerUiDir({ TASKMESH_JAEGER_UI_DIR: dir })).toBe(dir);
    expect(jaegerUiDir({ TASKMESH_JAEGER_UI_DIR: "  " })).toBeUndefined();
    expect(jaegerUiDir({})).toBeUndefined();
  });

  it("is refused, naming the variable, when it holds no index.html", () => {
    expect(() => jaegerUiDir({ TASKMESH_JAEGER_UI_DIR: join(dir, "missing") })).toThrow(/^TASKMESH_JAEGER_UI_DIR: .*missing holds no index\.html/);
  });

  it("becomes the query extension's ui.assets_path; without it the config names no assets", () => {
    const config = (text: string) => parse(text) as { extensions: { jaeger_query: { ui?: { assets_path: string } } } };
    expect(config(jaegerConfig({ stateDir: dir, uiAssetsDir: dir })).extensions.jaeger_query.ui).toEqual({ assets_path: dir });
    expect(config(jaegerConfig({ stateDir: dir })).extensions.jaeger_query.ui).toBeUndefined();
  });
});
