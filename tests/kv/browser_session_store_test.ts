/**
 * Browser sessions and parked authorization requests over real KV: only the cookie's hash is
 * stored, expiry and account deactivation end a session, sign-out ends it in every process
 * (another service instance on the same KV), and a parked request is taken exactly once even
 * by racing takes.
 */
import { assert, assertEquals } from "../assert.ts";
import {
  BROWSER_SESSION_LIFETIME_MS,
  BrowserSessions,
} from "../../domain/oauth/browser_sessions.ts";
import {
  PENDING_AUTHORIZATION_LIFETIME_MS,
  PendingAuthorizations,
} from "../../domain/oauth/pending_authorizations.ts";
import type { AuthorizationRequest } from "../../domain/oauth/oauth_types.ts";
import {
  KvBrowserSessionStore,
  KvPendingAuthorizationStore,
} from "../../kv/browser_session_store.ts";

const REQUEST: AuthorizationRequest = {
  clientId: "client1",
  redirectUri: "https://app.example/cb",
  responseMode: "query",
  state: "s",
  scope: { api: true, deviceId: "DEV", openid: false, scope: "urn:matrix:client:api:*" },
  codeChallenge: "a".repeat(43),
};

Deno.test("browser sessions: hashed cookie, expiry, deactivation, sign-out across instances", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    let now = 1_000_000;
    const active = new Set(["@a:x"]);
    const make = () =>
      new BrowserSessions({
        store: new KvBrowserSessionStore(kv, () => now),
        accountActive: (userId) => Promise.resolve(active.has(userId)),
        now: () => now,
      });
    const one = make();
    const other = make();
    const { cookieValue, session } = await one.start("@a:x");
    assertEquals(session.userId, "@a:x");
    assertEquals(session.expiresAt, now + BROWSER_SESSION_LIFETIME_MS);

    // The cookie value itself is nowhere in KV.
    for await (const entry of kv.list({ prefix: [] })) {
      assert(!JSON.stringify(entry.key).includes(cookieValue));
      assert(!JSON.stringify(entry.value).includes(cookieValue));
    }
    assertEquals((await other.resolve(cookieValue))?.sessionId, session.sessionId);
    assertEquals(await other.resolve(cookieValue + "x"), null);
    assertEquals(await other.resolve(""), null);
    assertEquals(await other.resolve("x".repeat(10_000)), null);

    // Deactivated: no longer resolves (and again when active: the record was not touched).
    active.delete("@a:x");
    assertEquals(await other.resolve(cookieValue), null);
    active.add("@a:x");
    assert(await other.resolve(cookieValue));

    // Expired, even if KV has not dropped the record yet.
    now += BROWSER_SESSION_LIFETIME_MS;
    assertEquals(await one.resolve(cookieValue), null);
    now -= BROWSER_SESSION_LIFETIME_MS;

    // Sign-out in one instance ends it for the other.
    await one.end(cookieValue);
    assertEquals(await other.resolve(cookieValue), null);

    // A password change ends every session of the user, and only theirs.
    const first = await one.start("@a:x");
    const second = await other.start("@a:x");
    active.add("@b:x");
    const bystander = await one.start("@b:x");
    assertEquals(await one.endAll("@a:x"), 2);
    assertEquals(await other.resolve(first.cookieValue), null);
    assertEquals(await other.resolve(second.cookieValue), null);
    assert(await other.resolve(bystander.cookieValue));
    // Signed-out sessions leave nothing listed under the user.
    await one.end(bystander.cookieValue);
    assertEquals(await one.endAll("@b:x"), 0);
  } finally {
    kv.close();
  }
});

Deno.test("pending authorizations: park, get, one take wins, expiry", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    let now = 5_000_000;
    const pending = new PendingAuthorizations(
      new KvPendingAuthorizationStore(kv, () => now),
      () => now,
    );
    const id = await pending.park(REQUEST);
    assert(/^[A-Za-z0-9_-]{32}$/.test(id));
    assertEquals((await pending.get(id))?.request, REQUEST);
    assertEquals(await pending.get("not-an-id"), null);
    assertEquals(await pending.take("../" + id), null);

    const takes = await Promise.all(Array.from({ length: 8 }, () => pending.take(id)));
    assertEquals(takes.filter((t) => t !== null).length, 1);
    assertEquals(await pending.get(id), null);

    const late = await pending.park(REQUEST);
    now += PENDING_AUTHORIZATION_LIFETIME_MS;
    assertEquals(await pending.get(late), null);
    assertEquals(await pending.take(late), null);
  } finally {
    kv.close();
  }
});
