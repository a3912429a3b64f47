/**
 * Limits and hostile input on the sign-in pages: sign-in attempts per address, failed passwords
 * per account (shared with /login), answered as an HTML 429 page with Retry-After; oversized
 * and non-form bodies; client-chosen names and URLs escaped on the consent page.
 */
import { assert, assertEquals } from "../../assert.ts";
import { OAUTH_PAGES } from "../../../domain/oauth/oauth_paths.ts";
import { startTestServer } from "../test_server.ts";
import { Browser, formTo, passwordSignIn } from "./browser_flow.ts";
import {
  authorizePath,
  browserFor,
  createUser,
  pkcePair,
  registerClient,
  type TestServer,
} from "./oauth_client_fixture.ts";

/** A browser whose requests come from `address` (Deno.serve's connection info). */
function browserAt(server: TestServer, address: string): Browser {
  return new Browser((input, init) =>
    server.app.request(input, init, { remoteAddr: { hostname: address } })
  );
}

Deno.test("login page: attempts per address and failures per account answer 429 pages", async () => {
  // A clock that stands still: buckets do not refill while password hashes are checked.
  const frozen = Date.now();
  const server = await startTestServer({}, { now: () => frozen });
  try {
    await createUser(server, "olga", "pw-olga-1");
    // Failed passwords count per account, from any address: 3 at once, as for /login.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      statuses.push(
        (await passwordSignIn(browserAt(server, `198.51.100.${i}`), "olga", "bad")).status,
      );
    }
    assertEquals(statuses, [403, 403, 403, 429]);
    const limited = await passwordSignIn(browserAt(server, "198.51.100.9"), "olga", "pw-olga-1");
    assertEquals(limited.status, 429);
    assert(limited.headers.get("retry-after"));
    assert(limited.headers.get("content-type")?.startsWith("text/html"));
    // The /login API shares the count.
    const api = await server.request("POST", "/_matrix/client/v3/login", {
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "olga" },
        password: "pw-olga-1",
      },
    });
    assertEquals(api.status, 429);

    // Sign-in posts per address: the login bucket (10 at once) whatever the account.
    const browser = browserAt(server, "203.0.113.7");
    const page = await browser.get(OAUTH_PAGES.login);
    const form = formTo(page, OAUTH_PAGES.login);
    const perAddress: number[] = [];
    for (let i = 0; i < 11; i++) {
      perAddress.push(
        (await browser.submit(form, { username: `nobody${i}`, password: "x" })).status,
      );
    }
    assertEquals(perAddress.slice(0, 10), Array(10).fill(403));
    assertEquals(perAddress[10], 429);
  } finally {
    server.close();
  }
});

Deno.test("pages: bodies that are not small forms are refused", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    const browser = browserFor(server);
    await browser.get(OAUTH_PAGES.login);
    const json = await browser.post(OAUTH_PAGES.login, {}, { "content-type": "application/json" });
    assertEquals(json.status, 415);
    const huge = await browser.post(OAUTH_PAGES.login, { username: "a".repeat(20_000) });
    assertEquals(huge.status, 413);
    assert(!/<script/i.test(huge.text));
  } finally {
    server.close();
  }
});

Deno.test("consent page: the client's name and URLs are escaped, http logos not shown", async () => {
  const server = await startTestServer({ TESSERA_RATE_LIMITS: "off" });
  try {
    await createUser(server, "pia", "pw-pia-1");
    const clientId = await registerClient(server, {
      client_name: `<script>alert("x")</script><img src=x onerror=alert(1)>`,
    });
    const browser = browserFor(server);
    await passwordSignIn(browser, "pia", "pw-pia-1");
    const consent = await browser.open(authorizePath(clientId, pkcePair().challenge));
    assertEquals(consent.status, 200);
    assert(!/<script/i.test(consent.text));
    assert(!consent.text.includes("<img src=x"));
    assert(consent.text.includes("&lt;script&gt;"));
    // The application's name is labelled as its own claim; the host is what registration tied.
    assert(consent.text.includes("app.example"));
  } finally {
    server.close();
  }
});
