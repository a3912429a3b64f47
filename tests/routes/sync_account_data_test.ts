/** Global account data in /sync: the filter's `account_data` holds for `m.push_rules` too. */
import { assertEquals } from "../assert.ts";
import { registerUser } from "./client_harness.ts";
import { startTestServer } from "./test_server.ts";
import type { JsonObject } from "../../domain/protocol/json.ts";

Deno.test("the account_data filter applies to m.push_rules; full_state brings them back", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const put = await server.request(
      "PUT",
      `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}/account_data/my.test.type`,
      { token: alice.accessToken, body: { cats_or_rats: "cats" } },
    );
    assertEquals(put.status, 200);
    const types = (body: JsonObject) =>
      (body.account_data as { events: JsonObject[] }).events.map((e) => e.type).sort();
    const sync = async (query: string) => {
      const res = await server.request("GET", `/_matrix/client/v3/sync?${query}`, {
        token: alice.accessToken,
      });
      assertEquals(res.status, 200);
      return res.body as JsonObject;
    };
    const filter = encodeURIComponent(
      JSON.stringify({ account_data: { types: ["my.test.type"] } }),
    );
    assertEquals(types(await sync(`filter=${filter}`)), ["my.test.type"]);
    const everything = await sync("");
    assertEquals(types(everything), ["m.push_rules", "my.test.type"]);
    // Nothing changed since: full_state still carries the rules, a plain incremental does not.
    const since = everything.next_batch as string;
    assertEquals(types(await sync(`since=${since}`)), []);
    assertEquals(types(await sync(`since=${since}&full_state=true`)), [
      "m.push_rules",
      "my.test.type",
    ]);
  } finally {
    await server.close();
  }
});
