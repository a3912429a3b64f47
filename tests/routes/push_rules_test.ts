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
    assertEquals(content.map((r: { rule_id: string }) => r.rule_id), [
      "lie",
      "cake",
      "pie",
      ".m.rule.contains_user_name",
    ]);
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
    assertEquals(full.events[0].content.global.content.length, 4);
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

Deno.test("push rules: the legacy mention rules are listed, can be toggled, and notify a body mention without m.mentions, even in a muted room", async () => {
  const server = await startTestServer();
  try {
    const alice = await registerUser(server, "alice");
    const bob = await registerUser(server, "bob");
    const token = bob.accessToken;
    const global = (await server.request("GET", `${RULES}/`, { token })).body.global;
    const ids = (rules: { rule_id: string }[]) => rules.map((r) => r.rule_id);
    const override = ids(global.override);
    assertEquals(
      override.indexOf(".m.rule.contains_display_name"),
      override.indexOf(".m.rule.is_user_mention") + 1,
    );
    assertEquals(
      override.indexOf(".m.rule.roomnotif"),
      override.indexOf(".m.rule.is_room_mention") + 1,
    );
    assertEquals(global.content, [{
      rule_id: ".m.rule.contains_user_name",
      default: true,
      enabled: true,
      pattern: "bob",
      actions: ["notify", { set_tweak: "sound", value: "default" }, { set_tweak: "highlight" }],
    }]);
    const one = await server.request("GET", `${RULES}/global/override/.m.rule.roomnotif`, {
      token,
    });
    assertEquals([one.status, one.body.default, one.body.conditions[0].pattern], [
      200,
      true,
      "@room",
    ]);

    // A room of three (so no one-to-one rule), which bob mutes with a room rule.
    const carol = await registerUser(server, "carol");
    const created = await server.request("POST", "/_matrix/client/v3/createRoom", {
      token: alice.accessToken,
      body: { preset: "public_chat" },
    });
    const roomId = created.body.room_id as string;
    const room = encodeURIComponent(roomId);
    for (const user of [bob, carol]) {
      const joined = await server.request("POST", `/_matrix/client/v3/rooms/${room}/join`, {
        token: user.accessToken,
        body: {},
      });
      assertEquals(joined.status, 200);
    }
    const mute = await server.request("PUT", `${RULES}/global/room/${room}`, {
      token,
      body: { actions: ["dont_notify"] },
    });
    assertEquals(mute.status, 200);
    let txn = 0;
    const send = async (content: Record<string, unknown>) => {
      const sent = await server.request(
        "PUT",
        `/_matrix/client/v3/rooms/${room}/send/m.room.message/t${txn++}`,
        { token: alice.accessToken, body: { msgtype: "m.text", ...content } },
      );
      assertEquals(sent.status, 200);
      return sent.body.event_id as string;
    };
    const notified = async () => {
      const list = await server.request("GET", "/_matrix/client/v3/notifications", { token });
      return list.body.notifications.map((n: any) => [n.event.event_id, n.actions]);
    };
    const highlight = ["notify", { set_tweak: "sound", value: "default" }, {
      set_tweak: "highlight",
    }];

    await send({ body: "nothing for anyone here" });
    await send({ body: "bob, are you there?", "m.mentions": {} });
    const mention = await send({ body: "Second message - " + bob.userId });
    assertEquals(await notified(), [[mention, highlight]]);

    // Disabled, the user-name rule is off; the display-name rule (the localpart by default) still
    // matches the name, until it is disabled too.
    const toggle = (path: string, enabled: boolean) =>
      server.request("PUT", `${RULES}/global/${path}/enabled`, { token, body: { enabled } });
    assertEquals((await toggle("content/.m.rule.contains_user_name", false)).status, 200);
    assertEquals(
      (await server.request("GET", `${RULES}/global/content/.m.rule.contains_user_name/enabled`, {
        token,
      })).body,
      { enabled: false },
    );
    const byDisplayName = await send({ body: "hi bob" });
    assertEquals((await notified())[0], [byDisplayName, highlight]);
    assertEquals((await toggle("override/.m.rule.contains_display_name", false)).status, 200);
    await send({ body: "hi bob, again" });
    assertEquals((await notified())[0][0], byDisplayName);
    assertEquals((await toggle("content/.m.rule.contains_user_name", true)).status, 200);
    const again = await send({ body: "bob!" });
    assertEquals((await notified())[0][0], again);
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
