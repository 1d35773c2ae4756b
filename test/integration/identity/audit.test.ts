import { Kafka, logLevel, type Admin, type Consumer } from "kafkajs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { AuditAction, AuditEvent, AuditOutcome } from "@taskmesh/contracts/gen/taskmesh/identity/v1/identity";
import { testTopicPrefix } from "../../support/kafka.js";
import { databaseText, edge, failure, fromAddress, startIdentity, waitFor, type IdentityHarness } from "./support.js";

interface Received {
  readonly key: string;
  readonly headers: Record<string, string>;
  readonly value: string;
}

interface AuditRowView {
  id: string;
  action: number;
  outcome: number;
  actor: string;
  subject: string;
  api_key_id: string;
  family_id: string;
  reason: string;
  client_ip: string;
  created_at: Date;
  traceparent: string;
  published_at: Date | null;
}

describe("identity: audit log and its Kafka topic", () => {
  const prefix = testTopicPrefix("identity-audit");
  const topic = `${prefix}.taskmesh.identity`;
  const brokers = [inject("kafkaBrokers")];
  let h: IdentityHarness;
  let kafka: Kafka;
  let admin: Admin;
  let consumer: Consumer;
  const received: Received[] = [];
  /** Every secret and token handed out in this file. */
  const secrets: string[] = [];

  beforeAll(async () => {
    kafka = new Kafka({ clientId: prefix, brokers, logLevel: logLevel.NOTHING });
    admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
    consumer = kafka.consumer({ groupId: topic, heartbeatInterval: 200, maxWaitTimeInMs: 100, sessionTimeout: 10_000, rebalanceTimeout: 10_000, allowAutoTopicCreation: false });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => void received.push({
        key: message.key?.toString() ?? "",
        headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
        value: message.value!.toString(),
      }),
    });
    h = await startIdentity("identity_audit", { reuseGraceMs: 0, relay: { topic, brokers } });
  });

  afterAll(async () => {
    await h?.stop();
    await consumer?.disconnect().catch(() => undefined);
    await admin?.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin?.disconnect().catch(() => undefined);
  });

  it("records every credential event in identity.audit and publishes each to Kafka, in order, without any secret", async () => {
    const created = await h.client.createApiKey({ name: "audited", scopes: ["tasks:read"], subject: "svc-audited", ttl: undefined }, { metadata: edge({ sub: "ops", scope: "admin" }) });
    const keyId = created.apiKey!.id;
    secrets.push(created.secret);
    const issued = await h.client.issueToken({ apiKey: created.secret, scopes: [] }, { metadata: fromAddress("198.51.100.9") });
    secrets.push(issued.accessToken, issued.refreshToken);
    const refreshed = await h.client.refreshToken({ refreshToken: issued.refreshToken, scopes: [] });
    secrets.push(refreshed.accessToken, refreshed.refreshToken);
    expect((await failure(h.client.refreshToken({ refreshToken: issued.refreshToken, scopes: [] }))).reason).toBe("AUTH_REFRESH_TOKEN_REUSED");
    const bad = `tmk_${"x".repeat(43)}`;
    secrets.push(bad);
    expect((await failure(h.client.issueToken({ apiKey: bad, scopes: [] }, { metadata: fromAddress("192.0.2.1, 203.0.113.50") }))).reason).toBe("AUTH_INVALID_API_KEY");
    const second = await h.client.issueToken({ apiKey: created.secret, scopes: [] });
    secrets.push(second.accessToken, second.refreshToken);
    await h.client.revokeToken({ target: { $case: "token", value: second.refreshToken }, reason: "logout" });
    await h.client.revokeApiKey({ id: keyId, reason: "done" });
    const rotated = await h.client.rotateSigningKey({ activationDelay: { seconds: 0n, nanos: 0 } });

    const { rows } = await h.sql.query<AuditRowView>("SELECT * FROM identity.audit ORDER BY seq");
    const { A, O } = { A: AuditAction, O: AuditOutcome };
    const mine = rows.filter((r) => r.actor !== "identity"); // the first key of the start is the service's own
    expect(mine.map((r) => [r.action, r.outcome, r.reason])).toEqual([
      [A.AUDIT_ACTION_API_KEY_CREATED, O.AUDIT_OUTCOME_SUCCESS, ""],
      [A.AUDIT_ACTION_TOKEN_ISSUED, O.AUDIT_OUTCOME_SUCCESS, ""],
      [A.AUDIT_ACTION_TOKEN_REFRESHED, O.AUDIT_OUTCOME_SUCCESS, ""],
      [A.AUDIT_ACTION_REFRESH_TOKEN_REUSED, O.AUDIT_OUTCOME_DENIED, "AUTH_REFRESH_TOKEN_REUSED"],
      [A.AUDIT_ACTION_TOKEN_ISSUED, O.AUDIT_OUTCOME_DENIED, "AUTH_INVALID_API_KEY"],
      [A.AUDIT_ACTION_TOKEN_ISSUED, O.AUDIT_OUTCOME_SUCCESS, ""],
      [A.AUDIT_ACTION_TOKEN_REVOKED, O.AUDIT_OUTCOME_SUCCESS, "logout"],
      [A.AUDIT_ACTION_API_KEY_REVOKED, O.AUDIT_OUTCOME_SUCCESS, "done"],
      [A.AUDIT_ACTION_SIGNING_KEY_ROTATED, O.AUDIT_OUTCOME_SUCCESS, ""],
      [A.AUDIT_ACTION_SIGNING_KEY_ACTIVATED, O.AUDIT_OUTCOME_SUCCESS, ""],
    ]);
    expect(mine[0]).toMatchObject({ actor: "ops", subject: "svc-audited", api_key_id: keyId });
    expect(mine[1]).toMatchObject({ actor: `apikey:${keyId}`, subject: "svc-audited", api_key_id: keyId, family_id: issued.familyId, client_ip: "198.51.100.9" });
    expect(mine[3]).toMatchObject({ subject: "svc-audited", family_id: issued.familyId });
    expect(mine[4]).toMatchObject({ actor: "", subject: "", api_key_id: "", client_ip: "203.0.113.50" });
    expect(mine[8]).toMatchObject({ actor: "local" });

    await waitFor("every audit row to be published", async () =>
      Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM identity.audit WHERE published_at IS NULL")).rows[0]!.n) === 0);
    await waitFor("every audit event on Kafka", () => new Set(received.map((m) => m.headers.ce_id)).size >= rows.length);
    const all = (await h.sql.query<AuditRowView>("SELECT * FROM identity.audit ORDER BY seq")).rows;
    const byId = new Map(received.map((m) => [m.headers.ce_id!, m]));
    for (const row of all) {
      const m = byId.get(row.id)!;
      expect(m, `event ${row.id}`).toBeDefined();
      const event = AuditEvent.fromJSON(JSON.parse(m.value));
      expect(m.key).toBe(row.subject);
      expect(m.headers).toMatchObject({ ce_id: row.id, ce_type: event.type, ce_source: "//taskmesh.dev/identity", ce_specversion: "1.0", ce_time: row.created_at.toISOString() });
      expect([event.id, event.action, event.outcome, event.subject, event.familyId, event.reason, event.clientIp]).toEqual([row.id, row.action, row.outcome, row.subject, row.family_id, row.reason, row.client_ip]);
      expect(event.type).toMatch(/^taskmesh\.identity\.v1\.[a-z_]+$/);
      if (row.traceparent) expect(m.headers.traceparent).toBe(row.traceparent);
    }
    expect(AuditEvent.fromJSON(JSON.parse(byId.get(mine[1]!.id)!.value)).type).toBe("taskmesh.identity.v1.token_issued");
    // per subject, the events arrive in the order they were recorded
    const order = received.filter((m) => m.key === "svc-audited").map((m) => m.headers.ce_id);
    expect([...new Set(order)]).toEqual(all.filter((r) => r.subject === "svc-audited").map((r) => r.id));
    expect(rotated.newKey?.kid).toBeTruthy();

    // no secret or token anywhere: audit rows, Kafka values and headers, every table of the schema
    const haystacks = [JSON.stringify(all), JSON.stringify(received), await databaseText(h.sql)];
    for (const secret of secrets) {
      for (const haystack of haystacks) {
        expect(haystack.includes(secret)).toBe(false);
        expect(haystack.includes(Buffer.from(secret).toString("hex"))).toBe(false);
      }
    }
    // the signature part of each token is not there either (a token split up would still be a token)
    for (const token of secrets.filter((s) => s.split(".").length === 3)) {
      for (const haystack of haystacks) expect(haystack.includes(token.split(".")[2]!)).toBe(false);
    }
  });
  it("loses no audit event when the relay's connection dies: rows wait in the table and go out after it reconnects", async () => {
    const { secret } = await h.client.createApiKey({ name: "crash", scopes: ["worker"], subject: "svc-crash", ttl: undefined });
    const before = received.length;
    const burst = async (n: number) => {
      for (let i = 0; i < n; i++) await h.client.issueToken({ apiKey: secret, scopes: [] });
    };
    const killRelay = async () => {
      const { rows } = await h.sql.query<{ killed: boolean }>(
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = 'identity-test-relay' AND datname = current_database()");
      return rows.filter((r) => r.killed).length;
    };
    const writing = burst(20);
    await new Promise((r) => setTimeout(r, 50));
    expect(await killRelay()).toBe(1);
    await writing;
    await burst(5);
    const { rows } = await h.sql.query<{ id: string }>("SELECT id FROM identity.audit WHERE subject = 'svc-crash' ORDER BY seq");
    expect(rows).toHaveLength(26);
    await waitFor("the relay to publish every row again", async () =>
      Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM identity.audit WHERE published_at IS NULL")).rows[0]!.n) === 0, 20_000);
    await waitFor("every event on Kafka", () => rows.every((r) => received.some((m) => m.headers.ce_id === r.id)), 20_000);
    expect(received.length).toBeGreaterThan(before);
    // first copies per subject in recorded order (a re-send after the crash may repeat some)
    const firsts = [...new Set(received.filter((m) => m.key === "svc-crash").map((m) => m.headers.ce_id))];
    expect(firsts).toEqual(rows.map((r) => r.id));
  });
});
