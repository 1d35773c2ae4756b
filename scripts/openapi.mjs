// Finishes the OpenAPI document protoc-gen-openapiv2 writes from proto/
// (scripts/generate.sh runs it; plain JavaScript, no dependencies):
//   node scripts/openapi.mjs packages/contracts/gen/openapi/taskmesh.swagger.json
// - names the API and says how to authenticate;
// - declares the edge's access token (`Authorization: Bearer <token>`),
//   required by every operation except the open ones (OPEN_ROUTES);
// - keeps only the tags of services with HTTP routes, the task API first;
// - gives each operation a one-sentence summary, the whole comment staying
//   its description.
import { readFileSync, writeFileSync } from "node:fs";

/**
 * The HTTP routes the edge serves without an access token: the transcoded
 * forms of `OPEN_PATHS` in packages/mesh/src/edge-security.ts (a unit test keeps
 * the two lists equal).
 */
export const OPEN_ROUTES = ["/v1/tokens", "/v1/tokens:refresh", "/.well-known/jwks.json"];

/** The services' order on the page: the task API first. */
const TAG_ORDER = ["TaskService", "IdentityService", "EventService", "ConfigService"];

const DESCRIPTION = `The HTTP/JSON API of taskmesh, as the edge Envoy serves it (each route is
transcoded to the gRPC method named in its operation id; the same calls work
over gRPC and gRPC-Web on the same port).

**Authentication.** Every operation except issuing and refreshing tokens and
the JWKS needs an access token: \`Authorization: Bearer <token>\`. Get one with
\`npx taskmesh token\`, or exchange an API key at \`POST /v1/tokens\`; then
press **Authorize** and paste the token (the \`Bearer \` prefix is added when
missing).

**Errors** are \`google.rpc.Status\` as JSON, with the HTTP status of their
gRPC code, and \`google.rpc.ErrorInfo\` (domain \`taskmesh.dev\`) in
\`details\` carrying a stable \`reason\`.`;

/** The first sentence of a comment (up to the first ". " or blank line), for a summary. */
function firstSentence(text) {
  const paragraph = text.split(/\n\s*\n/)[0].replace(/\s+/g, " ").trim();
  const end = paragraph.search(/\.(\s|$)/);
  return end === -1 ? paragraph : paragraph.slice(0, end + 1);
}

/** A tag's place in TAG_ORDER (others after, as generated). */
function rank(tag) {
  const i = TAG_ORDER.indexOf(tag);
  return i === -1 ? TAG_ORDER.length : i;
}

const [file] = process.argv.slice(2);
if (!file) {
  console.error("usage: node scripts/openapi.mjs <taskmesh.swagger.json>");
  process.exit(2);
}
const doc = JSON.parse(readFileSync(file, "utf8"));
const used = new Set();
for (const [path, operations] of Object.entries(doc.paths)) {
  for (const operation of Object.values(operations)) {
    for (const tag of operation.tags ?? []) used.add(tag);
    const comment = [operation.summary, operation.description].filter(Boolean).join("\n\n");
    if (comment) {
      operation.summary = firstSentence(comment);
      operation.description = comment;
    }
    if (OPEN_ROUTES.includes(path)) operation.security = [];
  }
}
const finished = {
  swagger: doc.swagger,
  info: { title: "taskmesh", description: DESCRIPTION, version: "v1" },
  tags: (doc.tags ?? []).filter((t) => used.has(t.name)).sort((a, b) => rank(a.name) - rank(b.name)),
  consumes: doc.consumes,
  produces: doc.produces,
  securityDefinitions: {
    bearer: { type: "apiKey", name: "Authorization", in: "header", description: "An access token: `Bearer <token>` (from `npx taskmesh token` or `POST /v1/tokens`)." },
  },
  security: [{ bearer: [] }],
  paths: doc.paths,
  definitions: doc.definitions,
};
writeFileSync(file, `${JSON.stringify(finished, null, 2)}\n`);
