/**
 * Account locks and suspensions bind every process at once: the status is read from KV on each
 * request, never cached, so a lock set through one process refuses the user's next request
 * through the other (two real `main.ts` processes on one KV file).
 */
import { assertEquals } from "../assert.ts";
import { register, startProcessPair } from "./two_process_support.ts";

Deno.test("a lock or suspension set through one process binds the other at once", async () => {
  const pair = await startProcessPair((serverName) => ({ TESSERA_ADMINS: `@root:${serverName}` }));
  const { a, b } = pair;
  try {
    const root = await register(a, "root");
    const bob = await register(b, "bob");
    const room = await b.api("POST", "/createRoom", bob.token, {});
    assertEquals(room.status, 200);
    // B has served bob (token and status read) before the lock.
    assertEquals((await b.api("GET", "/account/whoami", bob.token)).status, 200);

    const lock = (locked: boolean) =>
      a.api("PUT", `/../v1/admin/lock/${encodeURIComponent(bob.userId)}`, root.token, { locked });
    assertEquals((await lock(true)).body, { locked: true });
    const refused = await b.api("GET", "/account/whoami", bob.token);
    assertEquals([refused.status, refused.body.errcode], [401, "M_USER_LOCKED"]);
    assertEquals((await lock(false)).body, { locked: false });
    assertEquals((await b.api("GET", "/account/whoami", bob.token)).status, 200);

    const suspend = await a.api(
      "PUT",
      `/../v1/admin/suspend/${encodeURIComponent(bob.userId)}`,
      root.token,
      { suspended: true },
    );
    assertEquals(suspend.body, { suspended: true });
    const roomPath = `/rooms/${encodeURIComponent(room.body.room_id)}`;
    const send = await b.api("PUT", `${roomPath}/send/m.room.message/t1`, bob.token, {
      msgtype: "m.text",
      body: "hi",
    });
    assertEquals([send.status, send.body.errcode], [403, "M_USER_SUSPENDED"]);
    assertEquals((await b.api("GET", `${roomPath}/messages?dir=b`, bob.token)).status, 200);
  } finally {
    await pair.stop();
  }
});
