import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Route } from "./envoy-types.js";

/** The files the edge serves at `/docs`. */
export interface EdgeDocsOptions {
  /** The OpenAPI document (`packages/contracts/gen/openapi/taskmesh.swagger.json`), as an absolute path. */
  readonly openapiPath: string;
  /** The npm package `swagger-ui-dist`'s folder, as an absolute path. */
  readonly swaggerUiDir: string;
}

/** Where the API docs live on the edge. */
export const DOCS_PATH = "/docs";

/**
 * The largest body a docs route answers (`swagger-ui-bundle.js` is about
 * 1.7 MB); Envoy reads each file once, when it loads the config.
 */
export const DOCS_BODY_LIMIT = 4 * 1024 * 1024;

/** The docs of this checkout: the generated OpenAPI document and the installed Swagger UI. */
export function localDocs(root: string): EdgeDocsOptions {
  const require = createRequire(join(root, "package.json"));
  return { openapiPath: join(root, "packages/contracts/gen/openapi/taskmesh.swagger.json"), swaggerUiDir: dirname(require.resolve("swagger-ui-dist/package.json")) };
}

/**
 * The page: Swagger UI on the edge's OpenAPI document. "Try it out" calls
 * this same origin; a token pasted without its `Bearer ` prefix gets one.
 */
const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>taskmesh API</title>
  <link rel="icon" type="image/png" href="${DOCS_PATH}/favicon-32x32.png">
  <link rel="stylesheet" href="${DOCS_PATH}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="${DOCS_PATH}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "${DOCS_PATH}/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      displayRequestDuration: true,
      requestInterceptor: (request) => {
        const token = request.headers.Authorization;
        if (token && !/^Bearer /i.test(token)) request.headers.Authorization = "Bearer " + token;
        return request;
      },
    });
  </script>
</body>
</html>
`;

/** What Envoy answers a static route with: a string in the config, or a file it reads when it loads the config. */
export type FileBody = { inline_string: string } | { filename: string };

/** A route answering `path` with a body and its content type, from Envoy itself; named `<label> <path>`. */
export function fileRoute(label: string, path: string, body: FileBody, contentType: string, cacheControl = "no-cache"): Route {
  return {
    name: `${label} ${path}`,
    match: { path },
    direct_response: { status: 200, body },
    response_headers_to_add: [
      { header: { key: "content-type", value: contentType }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" },
      { header: { key: "cache-control", value: cacheControl }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" },
    ],
  };
}

/**
 * The API docs, served by the edge itself (no upstream, no token): Swagger
 * UI at `/docs` on the OpenAPI document at `/docs/openapi.json`.
 */
export function docsRoutes(options: EdgeDocsOptions): Route[] {
  const ui = (name: string) => ({ filename: join(options.swaggerUiDir, name) });
  const day = "public, max-age=86400";
  const file = (path: string, body: FileBody, contentType: string, cacheControl?: string): Route => fileRoute("docs", path, body, contentType, cacheControl);
  return [
    file(DOCS_PATH, { inline_string: INDEX_HTML }, "text/html; charset=utf-8"),
    file(`${DOCS_PATH}/`, { inline_string: INDEX_HTML }, "text/html; charset=utf-8"),
    file(`${DOCS_PATH}/openapi.json`, { filename: options.openapiPath }, "application/json"),
    file(`${DOCS_PATH}/swagger-ui.css`, ui("swagger-ui.css"), "text/css", day),
    file(`${DOCS_PATH}/swagger-ui-bundle.js`, ui("swagger-ui-bundle.js"), "text/javascript", day),
    file(`${DOCS_PATH}/favicon-32x32.png`, ui("favicon-32x32.png"), "image/png", day),
  ];
}
