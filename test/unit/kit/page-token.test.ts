import { describe, expect, it } from "vitest";
import { Code, MeshError, PAGE_SIZE, decodePageToken, encodePageToken, pageSize } from "@taskmesh/kit";

/** The MeshError `fn` throws (fails the test when it throws nothing or something else). */
function thrown(fn: () => unknown): MeshError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(MeshError);
    return error as MeshError;
  }
  throw new Error("expected a MeshError");
}

const base64url = (text: string): string => Buffer.from(text).toString("base64url");

describe("page tokens", () => {
  it("give back the cursor they were made from, string or number, for the same query", () => {
    expect(decodePageToken(encodePageToken("list:/a/", "/a/b/c"), "list:/a/")).toBe("/a/b/c");
    expect(decodePageToken(encodePageToken("history:/k", 42), "history:/k")).toBe(42);
    expect(decodePageToken(encodePageToken("list:/", ""), "list:/")).toBe("");
  });

  it("are opaque URL-safe text that does not show the cursor", () => {
    const token = encodePageToken("list:/secret/", "/secret/key");
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(token).not.toContain("secret");
  });

  it("read an empty token as the first page", () => {
    expect(decodePageToken("", "list:/")).toBeUndefined();
  });

  it("refuse a token made for another query", () => {
    const token = encodePageToken("list:/a/", "/a/x");
    for (const scope of ["list:/b/", "list:/a", "history:/a/x"]) {
      expect(thrown(() => decodePageToken(token, scope))).toMatchObject({
        code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_PAGE_TOKEN", violations: [{ field: "page_token" }],
      });
    }
  });

  it("refuse garbage and tampered tokens with INVALID_ARGUMENT on the page_token field", () => {
    const tokens = [
      "garbage",
      "%%%",
      base64url("not json"),
      base64url("null"),
      base64url("[1,2]"),
      base64url(JSON.stringify({ v: 2, s: "list:/", c: "/x" })), // another format version
      base64url(JSON.stringify({ v: 1, s: "list:/", c: { key: "/x" } })), // cursor of the wrong type
      base64url(JSON.stringify({ v: 1, s: "list:/" })), // no cursor
    ];
    for (const token of tokens) {
      const e = thrown(() => decodePageToken(token, "list:/"));
      expect(e, token).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_PAGE_TOKEN" });
      expect(e.violations.map((v) => v.field)).toEqual(["page_token"]);
      expect(e.message).toMatch(/^invalid page_token: /);
    }
  });

  it("name the field the caller used", () => {
    expect(thrown(() => decodePageToken("garbage", "list:/", "history.page_token")).violations[0]?.field).toBe("history.page_token");
  });
});

describe("page sizes", () => {
  it("default to 100 for 0 and take 1..1000 as given", () => {
    expect(PAGE_SIZE).toEqual({ default: 100, max: 1000 });
    expect([pageSize(0), pageSize(1), pageSize(2), pageSize(1000)]).toEqual([100, 1, 2, 1000]);
  });

  it("refuse negative, fractional and too large sizes, naming the field", () => {
    for (const size of [-1, 1001, 2.5, Number.NaN]) {
      const e = thrown(() => pageSize(size));
      expect(e, String(size)).toMatchObject({ code: Code.INVALID_ARGUMENT, reason: "VAL_INVALID_PAGE_SIZE", violations: [{ field: "page_size" }] });
    }
    expect(thrown(() => pageSize(-5, "history.page_size")).violations[0]?.field).toBe("history.page_size");
  });
});
