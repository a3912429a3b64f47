/**
 * Read access, the cases beside the table of read_access_test.ts (issue 8, findings 1 and 2):
 * the visibility in force at each event decides (not the room's current one), /members?at=
 * cannot reach back before a join, a room's path serves no other room's event, and users who
 * never joined get no member list. Same markers and rules (read_access_support.ts).
 */
import { assert } from "../assert.ts";
import { checkAccess, checkMarkers, READERS, V3, World } from "./read_access_support.ts";

/** One server and one set of users for the whole file. */
let world: Promise<World> | undefined;
const getWorld = () => (world ??= World.start());
globalThis.addEventListener("unload", () => {
  world?.then((w) => w.close());
});

Deno.test({
  name: "read access: the visibility in force at each event decides, not the room's current one",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const w = await getWorld();
    const owner = w.owner.accessToken;
    const outsider = w.readers.get("nonmember")!;
    const joiner = w.readers.get("latejoiner")!;
    const room = async (initial: string) => {
      const { room_id: roomId } = await w.ok("POST", `${V3}/createRoom`, owner, {
        preset: "public_chat",
        initial_state: [{
          type: "m.room.history_visibility",
          content: { history_visibility: initial },
        }],
      });
      return { roomId, path: `${V3}/rooms/${encodeURIComponent(roomId)}` };
    };
    const setVisibility = (path: string, v: string) =>
      w.ok("PUT", `${path}/state/m.room.history_visibility/`, owner, { history_visibility: v });

    // joined -> world_readable: an outsider may now read, but only from the switch on.
    const opened = await room("joined");
    const SECRET = "[[switch|sent-under-joined]]";
    const PUBLIC = "[[switch|sent-under-world-readable]]";
    const secretId = await w.say(opened.path, owner, SECRET);
    await setVisibility(opened.path, "world_readable");
    const publicId = await w.say(opened.path, owner, PUBLIC);
    const openedMarkers = [
      { marker: SECRET, phase: "under joined", verdict: "forbidden" as const },
      { marker: PUBLIC, phase: "under world_readable", verdict: "required" as const },
    ];
    await t.step(
      "joined -> world_readable: an outsider's /messages, /context, /event",
      async () => {
        for (const dir of ["b", "f"]) {
          const page = await w.ok(
            "GET",
            `${opened.path}/messages?dir=${dir}&limit=50`,
            outsider.accessToken,
          );
          checkMarkers(`/messages dir=${dir}`, page, openedMarkers);
        }
        const ctx = await w.ok(
          "GET",
          `${opened.path}/context/${encodeURIComponent(publicId)}?limit=30`,
          outsider.accessToken,
        );
        checkMarkers("/context on the world-readable message", ctx, openedMarkers);
        const hidden = await w.server.request(
          "GET",
          `${opened.path}/event/${encodeURIComponent(secretId)}`,
          { token: outsider.accessToken },
        );
        assert(
          hidden.status === 404 && hidden.body?.errcode === "M_NOT_FOUND",
          `LEAK: /event of the message sent under joined: ${hidden.status} ${
            JSON.stringify(hidden.body)
          }`,
        );
      },
    );

    // shared -> joined, then a join: the shared message is history the joiner may read, the
    // one sent under joined before they joined is not.
    const closed = await room("shared");
    const SHARED = "[[switch|sent-under-shared]]";
    const JOINED_ONLY = "[[switch|sent-under-joined-before-join]]";
    const AFTER_JOIN = "[[switch|sent-after-join]]";
    await w.say(closed.path, owner, SHARED);
    await setVisibility(closed.path, "joined");
    await w.say(closed.path, owner, JOINED_ONLY);
    const since = await w.syncToken(joiner, closed.roomId);
    await w.ok("POST", `${V3}/join/${encodeURIComponent(closed.roomId)}`, joiner.accessToken, {});
    await w.say(closed.path, owner, AFTER_JOIN);
    const closedMarkers = [
      { marker: SHARED, phase: "under shared", verdict: "required" as const },
      {
        marker: JOINED_ONLY,
        phase: "under joined, before the join",
        verdict: "forbidden" as const,
      },
      { marker: AFTER_JOIN, phase: "after the join", verdict: "required" as const },
    ];
    await t.step("shared -> joined: the late joiner's /messages", async () => {
      for (const dir of ["b", "f"]) {
        const page = await w.ok(
          "GET",
          `${closed.path}/messages?dir=${dir}&limit=50`,
          joiner.accessToken,
        );
        checkMarkers(`/messages dir=${dir}`, page, closedMarkers);
      }
    });
    await t.step("shared -> joined: the late joiner's /sync", async () => {
      const filter = encodeURIComponent(
        JSON.stringify({ room: { rooms: [closed.roomId], timeline: { limit: 50 } } }),
      );
      const initial = await w.ok(
        "GET",
        `${V3}/sync?timeout=0&filter=${filter}`,
        joiner.accessToken,
      );
      checkMarkers("/sync initial", initial, closedMarkers);
      const incremental = await w.ok(
        "GET",
        `${V3}/sync?timeout=0&filter=${filter}&since=${since}`,
        joiner.accessToken,
      );
      // The shared message predates `since`: it may or may not be in the window.
      checkMarkers("/sync incremental", incremental, closedMarkers.slice(1));
    });
  },
});

Deno.test({
  name: "read access: /members?at= does not reach back before a joined-visibility join",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const w = await getWorld();
    const owner = w.owner.accessToken;
    const joiner = w.readers.get("latejoiner")!;
    const { room_id: roomId } = await w.ok("POST", `${V3}/createRoom`, owner, {
      preset: "public_chat",
      initial_state: [{
        type: "m.room.history_visibility",
        content: { history_visibility: "joined" },
      }],
    });
    const path = `${V3}/rooms/${encodeURIComponent(roomId)}`;
    const member = `${path}/state/m.room.member/${encodeURIComponent(w.owner.userId)}`;
    const OLD_NAME = "[[members-at|name-before-join]]";
    await w.ok("PUT", member, owner, { membership: "join", displayname: OLD_NAME });
    await w.say(path, owner, "[[members-at|message-before-join]]");
    await w.ok("PUT", member, owner, { membership: "join", displayname: "owner now" });
    await w.ok("POST", `${V3}/join/${encodeURIComponent(roomId)}`, joiner.accessToken, {});
    // The token just after the old display name, from the owner's pagination: tokens are
    // positions in the room, not secrets, so any member can hold (or craft) one.
    const all = await w.ok("GET", `${path}/messages?dir=f&limit=50`, owner);
    const index = all.chunk.findIndex((e: { content?: { displayname?: string } }) =>
      e.content?.displayname === OLD_NAME
    );
    assert(index >= 0, "the old display name is not in the owner's history");
    const upTo = await w.ok("GET", `${path}/messages?dir=f&limit=${index + 1}`, owner);
    const tokens: string[] = [upTo.end];
    for (const at of tokens) {
      const res = await w.server.request(
        "GET",
        `${path}/members?at=${encodeURIComponent(at)}`,
        { token: joiner.accessToken },
      );
      assert(
        res.status === 200 || (res.status === 403 && res.body?.errcode === "M_FORBIDDEN"),
        `/members?at=${at}: ${res.status} ${JSON.stringify(res.body)}`,
      );
      checkMarkers(`/members?at=${at}`, res.body, [
        { marker: OLD_NAME, phase: "display name set before the join", verdict: "forbidden" },
      ]);
    }
    // Control: the owner, joined then, sees that member list.
    const control = await w.ok(
      "GET",
      `${path}/members?at=${encodeURIComponent(tokens.at(-1)!)}`,
      owner,
    );
    checkMarkers("owner's /members?at=", control, [
      { marker: OLD_NAME, phase: "display name set before the join", verdict: "required" },
    ]);
  },
});

Deno.test({
  name:
    "read access: /event and /context under a room the reader is in do not serve another room's event",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const w = await getWorld();
    const owner = w.owner.accessToken;
    const reader = w.readers.get("latejoiner")!;
    const create = async (visibility: string) =>
      (await w.ok("POST", `${V3}/createRoom`, owner, {
        preset: "public_chat",
        initial_state: [{
          type: "m.room.history_visibility",
          content: { history_visibility: visibility },
        }],
      })).room_id as string;
    const secretRoom = await create("joined");
    const SECRET = "[[cross-room|secret]]";
    const secretId = await w.say(`${V3}/rooms/${encodeURIComponent(secretRoom)}`, owner, SECRET);
    const myRoom = await create("shared");
    await w.ok("POST", `${V3}/join/${encodeURIComponent(myRoom)}`, reader.accessToken, {});
    const mine = `${V3}/rooms/${encodeURIComponent(myRoom)}`;
    for (const route of ["event", "context"]) {
      const res = await w.server.request(
        "GET",
        `${mine}/${route}/${encodeURIComponent(secretId)}`,
        { token: reader.accessToken },
      );
      assert(
        res.status === 404 && res.body?.errcode === "M_NOT_FOUND",
        `/${route} of another room's event: ${res.status} ${JSON.stringify(res.body)}`,
      );
      checkMarkers(`/${route}`, res.body, [
        { marker: SECRET, phase: "another room", verdict: "forbidden" },
      ]);
    }
  },
});

/** Readers who never joined: the member list of a non-world-readable room is not theirs. */
const NEVER_JOINED = READERS.filter((k) => k.first !== "join" && k.second !== "accept");

for (const vis of ["shared", "invited", "joined"] as const) {
  Deno.test({
    name: `read access: users who never joined get no member list of a ${vis} room`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      const w = await getWorld();
      const owner = w.owner.accessToken;
      // A member who joined and named themselves before the reader came (the late-joiner user
      // serves: it is only a member here).
      const member = w.readers.get("latejoiner")!;
      for (const kind of NEVER_JOINED) {
        const { room_id: roomId } = await w.ok("POST", `${V3}/createRoom`, owner, {
          preset: "public_chat",
          initial_state: [{
            type: "m.room.history_visibility",
            content: { history_visibility: vis },
          }],
        });
        const path = `${V3}/rooms/${encodeURIComponent(roomId)}`;
        const memberPath = `${path}/state/m.room.member/${encodeURIComponent(member.userId)}`;
        const NAME = `[[member-list|${vis}|${kind.name}]]`;
        await w.ok("POST", `${V3}/join/${encodeURIComponent(roomId)}`, member.accessToken, {});
        await w.ok("PUT", memberPath, member.accessToken, {
          membership: "join",
          displayname: NAME,
        });
        await w.ok("PUT", `${path}/state/m.room.join_rules/`, owner, { join_rule: kind.joinRule });
        await w.membershipStep(kind, roomId, kind.first);
        await w.membershipStep(kind, roomId, kind.second);
        const reader = w.readers.get(kind.name)!;
        const hidden = [{
          marker: NAME,
          phase: "a member's name from before",
          verdict: "forbidden" as const,
        }];

        // Control: the owner sees the name.
        checkMarkers("owner /members", await w.ok("GET", `${path}/members`, owner), [
          { ...hidden[0], verdict: "required" },
        ]);
        await t.step(`${kind.title}: /sync initial with include_leave`, async () => {
          const filter = encodeURIComponent(
            JSON.stringify({ room: { rooms: [roomId], include_leave: true } }),
          );
          const sync = await w.ok(
            "GET",
            `${V3}/sync?timeout=0&filter=${filter}`,
            reader.accessToken,
          );
          checkMarkers("/sync initial with include_leave", sync, hidden);
        });
        await t.step(`${kind.title}: /members, /state, /state/m.room.member`, async () => {
          for (
            const [label, route] of [
              ["/members", `${path}/members`],
              ["/state", `${path}/state`],
              ["/state/m.room.member/{member}", memberPath],
            ]
          ) {
            const res = await w.server.request("GET", route, { token: reader.accessToken });
            const answered = checkAccess(label, res, kind.first ? "either" : "forbidden", true);
            if (answered) checkMarkers(label, res.body, hidden);
          }
        });
      }
    },
  });
}
