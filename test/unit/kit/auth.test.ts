import { Metadata } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { Code, MeshError, principalOf, requireScope } from "@taskmesh/kit";

function md(headers: Record<string, string | string[]>): Metadata {
  const m = new Metadata();
  for (const [k, v] of Object.entries(headers)) for (const value of [v].flat()) m.add(k, value);
  return m;
}
const claims = (c: object): string => Buffer.from(JSON.stringify(c)).toString("base64url");
const EDGE = 'By=spiffe://taskmesh.local/coordinator;Hash=ab;URI=spiffe://taskmesh.local/edge';
const WORKER = 'By=spiffe://taskmesh.local/coordinator;Hash=ab;URI=spiffe://taskmesh.local/worker';

function thrown(f: () => unknown): MeshError {
  try {
    f();
  } catch (error) {
    if (error instanceof MeshError) return error;
    throw error;
  }
  throw new Error("did not throw");
}

describe("principalOf / requireScope", () => {
  it("takes the subject and scopes of the claims the edge verified", () => {
    const p = principalOf(md({ "x-jwt-payload": claims({ sub: "alice", scope: "tasks:read tasks:write" }), "x-forwarded-client-cert": EDGE }));
    expect(p).toMatchObject({ kind: "token", subject: "alice" });
    expect([...p.scopes].sort()).toEqual(["tasks:read", "tasks:write"]);
  });

  it("expands admin to every scope", () => {
    const p = requireScope(md({ "x-jwt-payload": claims({ sub: "root", scope: "admin" }) }), "config:write");
    expect(p.subject).toBe("root");
  });

  it("refuses a call through the edge without claims: UNAUTHENTICATED AUTH_MISSING_TOKEN", () => {
    const e = thrown(() => principalOf(md({ "x-forwarded-client-cert": EDGE })));
    expect([e.code, e.reason]).toEqual([Code.UNAUTHENTICATED, "AUTH_MISSING_TOKEN"]);
  });

  it("refuses a missing scope with PERMISSION_DENIED AUTH_MISSING_SCOPE naming it", () => {
    const e = thrown(() => requireScope(md({ "x-jwt-payload": claims({ sub: "bob", scope: "tasks:read" }) }), "tasks:write"));
    expect([e.code, e.reason, e.metadata.scope]).toEqual([Code.PERMISSION_DENIED, "AUTH_MISSING_SCOPE", "tasks:write"]);
  });

  it("refuses two claim headers and unreadable claims", () => {
    const two = thrown(() => principalOf(md({ "x-jwt-payload": [claims({ sub: "a", scope: "admin" }), claims({ sub: "b", scope: "" })] })));
    expect(two.reason).toBe("AUTH_INVALID_TOKEN");
    expect(thrown(() => principalOf(md({ "x-jwt-payload": "%%%" }))).code).toBe(Code.UNAUTHENTICATED);
    expect(thrown(() => principalOf(md({ "x-jwt-payload": claims({ scope: "admin" }) }))).reason).toBe("AUTH_INVALID_TOKEN");
  });

  it("reads each call's own claims: a claim set seen before gives its own principal, never another token's", () => {
    const alice = claims({ sub: "alice", scope: "tasks:read" });
    const bob = claims({ sub: "bob", scope: "admin" });
    for (let round = 0; round < 3; round++) {
      expect(principalOf(md({ "x-jwt-payload": alice })).subject).toBe("alice");
      expect(principalOf(md({ "x-jwt-payload": bob })).subject).toBe("bob");
      expect(thrown(() => requireScope(md({ "x-jwt-payload": alice }), "config:write")).reason).toBe("AUTH_MISSING_SCOPE");
      expect(thrown(() => principalOf(md({ "x-jwt-payload": claims({ scope: "admin" }) }))).reason).toBe("AUTH_INVALID_TOKEN");
    }
    // Past the remembered ones: still each caller's own.
    for (let i = 0; i < 2500; i++) expect(principalOf(md({ "x-jwt-payload": claims({ sub: `user-${i}`, scope: "" }) })).subject).toBe(`user-${i}`);
    expect(principalOf(md({ "x-jwt-payload": alice })).subject).toBe("alice");
  });

  it("trusts other mesh services and direct loopback calls with every scope", () => {
    expect(requireScope(md({ "x-forwarded-client-cert": WORKER }), "worker")).toMatchObject({ kind: "mesh", subject: "spiffe://taskmesh.local/worker" });
    expect(requireScope(md({}), "admin")).toMatchObject({ kind: "local" });
  });
});
