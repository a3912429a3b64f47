// deno-lint-ignore-file no-explicit-any
import { assert, assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { registerUser } from "./client_harness.ts";
import { emptySyncResponse } from "../../domain/sync/sync_response.ts";

const RULES = "/_matrix/client/v3/pushrules";

Deno.test("push rules: defaults, add/order/enable/actions/delete, r0 alias and m.push_rules in sync", async () => {
  const server = await startTestServer();
  try {
    const bob = await registerUser(server, "bob");
    const token = bob.accessToken;
    const all = await server.request("GET", `${RULES}/`, { token });
    assertEquals(all.status, 200);
    assertEquals(all.body.global.override[0].rule_id, ".m.rule.master");
    const mention = all.body.global.override.find((r: { rule_id: string }) =>
      r.rule_id === ".m.rule.is_user_mention"
    );
    assertEquals(mention.conditions[0].value, bob.userId);
    const r0 = await server.request("GET", "/_matrix/client/r0/pushrules/global/", { token });
    assertEquals(r0.body, all.body.global);

    const put = (id: string, body: unknown, query = "") =>
      server.request("PUT", `${RULES}/global/content/${id}${query}`, { body, token });
    assertEquals((await put("cake", { pattern: "cake", actions: ["notify"] })).status, 200);
    assertEquals(
      (await put("lie", { pattern: "cake*lie", actions: ["notify"] }, "?before=cake")).status,
      200,
    );
    assertEquals((await put("pie", { pattern: "pie", actions: [] }, "?after=cake")).status, 200);
    const content = (await server.request("GET", `${RULES}/global/`, { token })).body.content;
    assertEquals(content.map((r: { rule_id: string }) => r.rule_id), ["lie", "cake", "pie"]);
    assertEquals(content[0], {
      rule_id: "lie",
      default: false,
      enabled: true,
      actions: ["notify"],
      pattern: "cake*lie",
    });

    const one = await server.request("GET", `${RULES}/global/content/cake`, { token });
    assertEquals([one.status, one.body.pattern, one.body.default], [200, "cake", false]);
    const off = await server.request("PUT", `${RULES}/global/content/cake/enabled`, {
      body: { enabled: false },
      token,
    });
    assertEquals(off.status, 200);
    const enabled = await server.request("GET", `${RULES}/global/content/cake/enabled`, { token });
    assertEquals(enabled.body, { enabled: false });

    // Server-default rules: actions and enabled can change, deletion cannot.
    const master = `${RULES}/global/override/.m.rule.master`;
    assertEquals(
      (await server.request("PUT", `${master}/enabled`, { body: { enabled: true }, token })).status,
      200,
    );
    assertEquals((await server.request("GET", `${master}/enabled`, { token })).body, {
      enabled: true,
    });
    const actions = { actions: ["notify", { set_tweak: "sound", value: "bing" }] };
    const msg = `${RULES}/global/underride/.m.rule.message`;
    assertEquals(
      (await server.request("PUT", `${msg}/actions`, { body: actions, token })).status,
      200,
    );
    assertEquals((await server.request("GET", `${msg}/actions`, { token })).body, actions);
    const del = await server.request("DELETE", msg, { token });
    assertEquals([del.status, del.body.errcode], [400, "M_INVALID_PARAM"]);

    // Room rules are keyed by room ID (percent-encoded in the path).
    const roomPath = `${RULES}/global/room/${encodeURIComponent("!abc:example.org")}`;
    assertEquals(
      (await server.request("PUT", roomPath, { body: { actions: [] }, token })).status,
      200,
    );
    assertEquals(
      (await server.request("GET", roomPath, { token })).body.rule_id,
      "!abc:example.org",
    );
    assertEquals((await server.request("DELETE", roomPath, { token })).status, 200);
    assertEquals((await server.request("GET", roomPath, { token })).status, 404);

    // The whole ruleset shows in sync as m.push_rules global account data: on a full sync, and
    // on an incremental one only when the rules changed in its window.
    const stream = server.deps.syncStreams.find((s) => s.name === "push_rules")!;
    const fill = async (since?: string) => {
      const upTo = await server.deps.eventStore.syncBarrier(bob.userId);
      const response = emptySyncResponse(upTo);
      await stream.fill({
        userId: bob.userId,
        deviceId: bob.deviceId,
        since,
        upTo,
        fullState: false,
        filter: {} as never,
        joinedRoomIds: [],
        now: 0,
      }, response);
      return { upTo, events: response.account_data.events as { type: string; content: any }[] };
    };
    const full = await fill();
    assertEquals(full.events.map((e) => e.type), ["m.push_rules"]);
    assertEquals(full.events[0].content.global.override[0].enabled, true);
    assertEquals(full.events[0].content.global.content.length, 3);
    assertEquals((await fill(full.upTo)).events, []);
    await server.request("PUT", `${master}/enabled`, { body: { enabled: false }, token });
    const changed = await fill(full.upTo);
    assertEquals(changed.events[0].content.global.override[0].enabled, false);
    const sync = await server.request("GET", "/_matrix/client/v3/sync", { token });
    if (sync.status === 200) {
      const types = sync.body.account_data.events.map((e: { type: string }) => e.type);
      assert(types.includes("m.push_rules"), "m.push_rules in a full /sync");
    }
  } finally {
    server.close();
  }
});

Deno.test("push rules: bad input is refused with Matrix errors", async () => {
  const server = await startTestServer();
  try {
    const { accessToken: token } = await registerUser(server, "bob");
    const put = (path: string, body: unknown, query = "") =>
      server.request("PUT", `${RULES}/global/${path}${query}`, { body, token });
    const expect = async (
      res: Promise<{ status: number; body: { errcode: string } }>,
      status: number,
      errcode: string,
    ) => {
      const r = await res;
      assertEquals([r.status, r.body.errcode], [status, errcode]);
    };
    await expect(server.request("GET", `${RULES}/`), 401, "M_MISSING_TOKEN");
    await expect(put("override/.mine", { actions: [] }), 400, "M_INVALID_PARAM");
    await expect(put("override/a%5Cb", { actions: [] }), 400, "M_INVALID_PARAM");
    await expect(put("sideways/x", { actions: [] }), 400, "M_INVALID_PARAM");
    await expect(put("override/x", { conditions: [] }), 400, "M_MISSING_PARAM");
    await expect(put("override/x", { actions: ["explode"] }), 400, "M_BAD_JSON");
    await expect(put("override/x", { actions: [{ value: 1 }] }), 400, "M_BAD_JSON");
    await expect(
      put("override/x", { actions: [], conditions: [{ key: "type" }] }),
      400,
      "M_MISSING_PARAM",
    );
    await expect(put("override/x", "{not json"), 400, "M_NOT_JSON");
    await expect(put("content/x", { actions: [] }), 400, "M_MISSING_PARAM");
    await expect(
      put("override/x", { actions: [], conditions: [] }, "?before=nope"),
      400,
      "M_UNKNOWN",
    );
    await expect(put("underride/x", { actions: [] }), 400, "M_MISSING_PARAM");
    await expect(put("override/x/enabled", { enabled: "yes" }), 400, "M_BAD_JSON");
    await expect(put("override/x/enabled", { enabled: true }), 404, "M_NOT_FOUND");
    await expect(put("override/x/actions", { actions: [] }), 404, "M_NOT_FOUND");
    await expect(
      server.request("GET", `${RULES}/global/override/x`, { token }),
      404,
      "M_NOT_FOUND",
    );
    await expect(
      server.request("DELETE", `${RULES}/global/override/x`, { token }),
      404,
      "M_NOT_FOUND",
    );
    await expect(
      server.request("GET", `${RULES}/global/nope/x/actions`, { token }),
      400,
      "M_INVALID_PARAM",
    );
    // Unknown condition kinds are accepted (they just never match).
    const ok = await put("override/x", {
      actions: ["notify"],
      conditions: [{ kind: "org.example.new" }],
    });
    assertEquals(ok.status, 200);
  } finally {
    server.close();
  }
});

Deno.test("push rules: paths per scope and kind, malformed ones answer 400", async () => {
  const server = await startTestServer();
  try {
    const { accessToken: token } = await registerUser(server, "carol");
    const req = (method: string, path: string, body?: unknown) =>
      server.request(method, `${RULES}${path}`, { token, body });
    assertEquals(
      (await req("PUT", "/global/room/%21r%3Aexample.org", { actions: ["dont_notify"] })).status,
      200,
    );
    const rooms = await req("GET", "/global/room/");
    assertEquals(rooms.status, 200);
    assertEquals(rooms.body[0].rule_id, "!r:example.org");
    assertEquals((await req("GET", "/global/")).body.room[0].rule_id, "!r:example.org");
    assertEquals((await req("GET", "/")).body.global.room[0].rule_id, "!r:example.org");
    const override = await req("GET", "/global/override/");
    assertEquals(override.body[0].rule_id, ".m.rule.master");

    assertEquals((await req("GET", "")).status, 404);
    for (
      const path of [
        "/global",
        "/global/room",
        "/not_a_scope/",
        "/global/not_a_kind/",
        "/global/override/.m.rule.master/not_an_attr",
        "/global/override/.m.rule.master/enabled/more",
      ]
    ) {
      assertEquals((await req("GET", path)).status, 400, `GET ${path}`);
    }
    for (
      const [path, body] of [
        ["/", {}],
        ["/not_a_scope/room/x", { actions: [] }],
        ["/global", {}],
        ["/global/room", { actions: [] }],
        ["/global/room/", { actions: [] }],
        ["/global/not_a_kind/x", { actions: [] }],
        ["/global/override/.m.rule.master/not_an_attr", { enabled: true }],
        ["/global/override/.m.rule.master/enabled", { enabled: "no" }],
        ["/global/room/a%2Fb", { actions: [] }],
      ] as const
    ) {
      assertEquals((await req("PUT", path, body)).status, 400, `PUT ${path}`);
    }
    assertEquals((await req("DELETE", "/global/room/")).status, 400);
    assertEquals((await req("DELETE", "/global/room/%21r%3Aexample.org")).status, 200);
    assertEquals((await req("GET", "/global/room/")).body, []);
  } finally {
    server.close();
  }
});
