/**
 * Route probe: every Client-Server endpoint of the spec (v1.19, `../shared/spec`) that a
 * homeserver implements is routed, except the areas other work owns, listed in
 * `OWNED_ELSEWHERE` with the reason. The endpoint list is the spec's own
 * (`spec-endpoints.json`); the routes are the app's (`app.routes`).
 */
import { assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";

/** One endpoint as `spec-endpoints.json` lists it. */
interface SpecEndpoint {
  readonly api: string;
  readonly method: string;
  readonly path: string;
  readonly module: string;
  readonly implemented_by: string;
}

/** Spec modules whose endpoints belong to other open work, and why they may be unrouted. */
const OWNED_ELSEWHERE: Record<string, string> = {
  "Application service client-server extensions": "application services (not yet supported)",
};

/** Single endpoints of otherwise covered modules that belong to other open work. */
const ENDPOINTS_OWNED_ELSEWHERE: Record<string, string> = {};

async function specEndpoints(): Promise<SpecEndpoint[]> {
  const url = new URL("../../../shared/spec/spec-endpoints.json", import.meta.url);
  return JSON.parse(await Deno.readTextFile(url)) as SpecEndpoint[];
}

/** A route path as a pattern: `:param` (with an optional `{regex}`) matches one or more chars. */
function routePattern(path: string): RegExp {
  const source = path.split("/").map((segment) => {
    if (!segment.startsWith(":")) return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const custom = segment.match(/^:[^{]+\{(.+)\}$/);
    return custom ? `(?:${custom[1]})` : "[^/]+";
  }).join("/");
  return new RegExp(`^${source}/?$`);
}

Deno.test("route probe: every Client-Server endpoint of the spec is routed", async () => {
  const server = await startTestServer();
  try {
    const routes = server.app.routes.filter((r) => r.method !== "ALL").map((r) => ({
      method: r.method,
      pattern: routePattern(r.path),
    }));
    const unrouted: string[] = [];
    for (const endpoint of await specEndpoints()) {
      if (endpoint.api !== "client" || endpoint.implemented_by !== "homeserver") continue;
      const key = `${endpoint.method} ${endpoint.path}`;
      if (endpoint.module in OWNED_ELSEWHERE || key in ENDPOINTS_OWNED_ELSEWHERE) continue;
      const concrete = endpoint.path.replace(/\{[^}]+\}/g, "x");
      const routed = routes.some((r) => r.method === endpoint.method && r.pattern.test(concrete));
      if (!routed) unrouted.push(`${key} (${endpoint.module})`);
    }
    assertEquals(unrouted, [], "route each endpoint, or list its area in OWNED_ELSEWHERE");
  } finally {
    await server.close();
  }
});
