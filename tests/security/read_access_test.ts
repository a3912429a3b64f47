/**
 * Read access by membership and history visibility (issue 8, findings 1 and 2): for every reader
 * kind under every history visibility, every route that returns events shows exactly what the
 * spec allows. Each room holds marker messages sent before the reader's first membership,
 * during it, and after their second (leave, kick, ban, accept); the tests assert that a marker
 * the reader may not see appears nowhere in a response body, and that one they must see does
 * appear. The rules live in read_access_support.ts. After the table: visibility changes (the
 * setting at each event decides), /members?at=, and another room's event under a room's path.
 * Ignored users and redactions are in read_access_filters_test.ts. */
import { assert } from "../assert.ts";
import {
  type Access,
  checkAccess,
  checkMarkers,
  currentlyJoined,
  departedMember,
  joinedMembersAccess,
  marker,
  notificationVerdict,
  type Phase,
  PHASES,
  type ReaderKind,
  READERS,
  type ScenarioRoom,
  stateAccess,
  stateVerdict,
  type SyncVariant,
  syncVerdict,
  timelineAccess,
  timelineVerdict,
  V3,
  type Verdict,
  VISIBILITIES,
  type Visibility,
  World,
} from "./read_access_support.ts";

/** One server and one set of users for the whole file; rooms are per scenario. */
let world: Promise<World> | undefined;
const getWorld = () => (world ??= World.start());
globalThis.addEventListener("unload", () => {
  world?.then((w) => w.close());
});

const SYNC_VARIANTS: readonly [SyncVariant, string][] = [
  ["initial", "/sync initial with include_leave"],
  ["since-before-room", "/sync incremental, since before the room existed"],
  ["since-before-membership", "/sync incremental, since just before the reader's membership"],
  ["full-state", "/sync incremental with full_state, since just before the membership"],
  ["federation", "/sync initial with event_format federation"],
];

type Rule = (vis: Visibility, kind: ReaderKind, phase: Phase) => Verdict;

function expected(room: ScenarioRoom, rule: Rule) {
  return PHASES.map((phase) => ({
    marker: marker(room.vis, room.kind, phase),
    phase,
    verdict: rule(room.vis, room.kind, phase),
  }));
}

/** /sync: the room sits in the right section, and the markers follow `syncVerdict`. */
async function checkSync(w: World, room: ScenarioRoom, variant: SyncVariant, label: string) {
  const res = await w.sync(room, variant);
  assert(res.status === 200, `${label}: ${res.status} ${JSON.stringify(res.body)}`);
  const rooms = res.body.rooms ?? {};
  const sections = ["join", "invite", "knock", "leave"].filter((s) => rooms[s]?.[room.roomId]);
  const { kind } = room;
  let want: string[] | undefined; // exact sections, when the spec fixes them
  if (kind.first === undefined) want = [];
  else if (currentlyJoined(kind)) want = ["join"];
  else if (kind.second === undefined) want = [kind.first]; // pending invite or knock
  else if (departedMember(kind)) want = ["leave"];
  if (want) {
    assert(
      JSON.stringify(sections) === JSON.stringify(want),
      `${label}: room in ${JSON.stringify(sections)}, want ${JSON.stringify(want)}`,
    );
  } else {
    assert(!sections.includes("join"), `${label}: a user who never joined has it in rooms.join`);
  }
  checkMarkers(label, res.body, expected(room, (v, k, p) => syncVerdict(v, k, p, variant)));
}

/**
 * /event and /context on one marker event: refused (403) for outsiders, 404 when hidden from a
 * reader the route serves, 200 when visible; the body leaks no hidden marker either way.
 */
async function checkAnchored(
  w: World,
  room: ScenarioRoom,
  phase: Phase,
  route: "event" | "context",
) {
  const id = encodeURIComponent(room.eventIds[phase]);
  const path = route === "event"
    ? `${room.path}/event/${id}`
    : `${room.path}/context/${id}?limit=30`;
  const label = `GET /${route} on the ${phase} marker`;
  const res = await w.server.request("GET", path, { token: room.reader.accessToken });
  const access = timelineAccess(room.vis, room.kind);
  const verdict = timelineVerdict(room.vis, room.kind, phase);
  const desc = `${label}: ${res.status} ${JSON.stringify(res.body).slice(0, 800)}`;
  if (access === "forbidden") {
    assert(res.status === 403 && res.body?.errcode === "M_FORBIDDEN", `want 403, ${desc}`);
  } else if (verdict === "forbidden") {
    const notFound = res.status === 404 && res.body?.errcode === "M_NOT_FOUND";
    const refused = res.status === 403 && res.body?.errcode === "M_FORBIDDEN";
    assert(
      notFound || (access === "either" && refused),
      `LEAK: the ${phase} marker's event must be hidden (404${
        access === "either" ? " or 403" : ""
      }), ${desc}`,
    );
  } else if (verdict === "required" && access === "ok") {
    assert(res.status === 200, `want 200 (the reader may see it), ${desc}`);
  } else {
    assert([200, 403, 404].includes(res.status), `unexpected status, ${desc}`);
  }
  // The event (and the events around it) must leak no hidden marker, whatever the status.
  checkMarkers(
    label,
    res.body,
    route === "event"
      ? expected(room, timelineVerdict).filter((e) => e.phase === phase)
      : expected(room, timelineVerdict),
    res.status === 200 && access === "ok" && verdict === "required",
  );
}

/** A GET checked against an access rule, then its body against a marker rule. */
async function checkRoute(
  w: World,
  room: ScenarioRoom,
  label: string,
  path: string,
  access: Access,
  rule: Rule,
  notFoundOk = false,
) {
  const res = await w.server.request("GET", path, { token: room.reader.accessToken });
  const answered = checkAccess(label, res, access, notFoundOk);
  checkMarkers(label, res.body, expected(room, rule), answered && access === "ok");
}

for (const vis of VISIBILITIES) {
  for (const kind of READERS) {
    Deno.test({
      name: `read access: ${kind.title}, history_visibility ${vis}`,
      // One server serves the whole file; it closes at unload.
      sanitizeOps: false,
      sanitizeResources: false,
      fn: async (t) => {
        const w = await getWorld();
        const room = await w.room(vis, kind);
        const token = room.reader.accessToken;

        await t.step("control: the owner sees every marker", async () => {
          const owner = w.owner.accessToken;
          const page = await w.ok("GET", `${room.path}/messages?dir=b&limit=50`, owner);
          checkMarkers("owner /messages", page, expected(room, () => "required"));
          const state = await w.ok("GET", `${room.path}/state`, owner);
          checkMarkers("owner /state", state, [{
            marker: marker(vis, kind, "name"),
            phase: "name",
            verdict: "required",
          }]);
        });

        for (const [variant, label] of SYNC_VARIANTS) {
          await t.step(label, () => checkSync(w, room, variant, label));
        }

        for (const dir of ["b", "f"]) {
          await t.step(`GET /messages dir=${dir}`, () =>
            checkRoute(
              w,
              room,
              `GET /messages dir=${dir}`,
              `${room.path}/messages?dir=${dir}&limit=50`,
              timelineAccess(vis, kind),
              timelineVerdict,
            ));
        }

        for (const phase of ["before", "during", "after"] as const) {
          await t.step(
            `GET /context on the ${phase} message`,
            () => checkAnchored(w, room, phase, "context"),
          );
          await t.step(
            `GET /event of the ${phase} message`,
            () => checkAnchored(w, room, phase, "event"),
          );
        }

        const stateRoutes: [string, string, Access][] = [
          ["GET /members", `${room.path}/members`, stateAccess(vis, kind)],
          ["GET /joined_members", `${room.path}/joined_members`, joinedMembersAccess(vis, kind)],
          ["GET /state", `${room.path}/state`, stateAccess(vis, kind)],
          [
            "GET /state/m.room.member/{owner}",
            `${room.path}/state/m.room.member/${encodeURIComponent(w.owner.userId)}`,
            stateAccess(vis, kind),
          ],
        ];
        for (const [label, path, access] of stateRoutes) {
          await t.step(
            label,
            () => checkRoute(w, room, label, path, access, stateVerdict, label.includes("{owner}")),
          );
        }

        await t.step("GET /notifications", async () => {
          const res = await w.server.request("GET", `${V3}/notifications?limit=100`, { token });
          assert(res.status === 200, `/notifications: ${res.status}`);
          // Only this room's notifications: the reader is in other scenarios' rooms too.
          const mine = res.body.notifications.filter((n: { room_id: string }) =>
            n.room_id === room.roomId
          );
          checkMarkers("GET /notifications", mine, expected(room, notificationVerdict));
        });
      },
    });
  }
}

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
