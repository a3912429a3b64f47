import { assertEquals } from "../assert.ts";
import { startTestServer } from "./test_server.ts";
import { FAST_HASHING, registerUser } from "./client_harness.ts";

const V3 = "/_matrix/client/v3";

Deno.test("devices: list, read, rename, bad input, unknown device", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice");
    const token = alice.accessToken;
    const list = await server.request("GET", `${V3}/devices`, { token });
    assertEquals(list.status, 200);
    assertEquals(list.body.devices.map(withoutLastSeen), [{ device_id: alice.deviceId }]);
    const renamed = await server.request("PUT", `${V3}/devices/${alice.deviceId}`, {
      token,
      body: { display_name: "Work laptop" },
    });
    assertEquals(renamed.status, 200);
    assertEquals(renamed.body, {});
    const one = await server.request("GET", `${V3}/devices/${alice.deviceId}`, { token });
    // The device's successful requests are recorded (last_seen_ts; no address in-process).
    assertEquals(typeof one.body.last_seen_ts, "number");
    assertEquals(withoutLastSeen(one.body), {
      device_id: alice.deviceId,
      display_name: "Work laptop",
    });
    const r0 = await server.request("GET", `/_matrix/client/r0/devices/${alice.deviceId}`, {
      token,
    });
    assertEquals(r0.body.display_name, "Work laptop");

    const missing = await server.request("GET", `${V3}/devices/NOPE`, { token });
    assertEquals(missing.status, 404);
    assertEquals(missing.body.errcode, "M_NOT_FOUND");
    const putMissing = await server.request("PUT", `${V3}/devices/NOPE`, {
      token,
      body: { display_name: "x" },
    });
    assertEquals(putMissing.status, 404);
    const badName = await server.request("PUT", `${V3}/devices/${alice.deviceId}`, {
      token,
      body: { display_name: 42 },
    });
    assertEquals(badName.status, 400);
    assertEquals(badName.body.errcode, "M_BAD_JSON");
    const notJson = await server.request("PUT", `${V3}/devices/${alice.deviceId}`, {
      token,
      body: "{{",
    });
    assertEquals(notJson.body.errcode, "M_NOT_JSON");
    const unchanged = await server.request("GET", `${V3}/devices/${alice.deviceId}`, { token });
    assertEquals(unchanged.body.display_name, "Work laptop");
    // Another user's device is invisible.
    const bob = await registerUser(server, "bob");
    const foreign = await server.request("GET", `${V3}/devices/${alice.deviceId}`, {
      token: bob.accessToken,
    });
    assertEquals(foreign.status, 404);
    const anonymous = await server.request("GET", `${V3}/devices`);
    assertEquals(anonymous.status, 401);
  } finally {
    server.close();
  }
});

Deno.test("devices: delete one and many behind UIA; their tokens stop working", async () => {
  const server = await startTestServer({}, FAST_HASHING);
  try {
    const alice = await registerUser(server, "alice", "pw");
    const logins: { access_token: string }[] = [];
    for (const deviceId of ["D1", "D2", "D3"]) {
      const res = await server.request("POST", `${V3}/login`, {
        body: { type: "m.login.password", user: "alice", password: "pw", device_id: deviceId },
      });
      logins.push(res.body);
    }
    const token = alice.accessToken;
    const challenge = await server.request("DELETE", `${V3}/devices/D1`, { token });
    assertEquals(challenge.status, 401);
    assertEquals(challenge.body.flows, [{ stages: ["m.login.password"] }]);
    const wrong = await server.request("DELETE", `${V3}/devices/D1`, {
      token,
      body: { auth: { type: "m.login.password", user: "alice", password: "no" } },
    });
    assertEquals(wrong.status, 401);
    assertEquals(wrong.body.errcode, "M_FORBIDDEN");
    const whoD1 = () =>
      server.request("GET", `${V3}/account/whoami`, { token: logins[0].access_token });
    assertEquals((await whoD1()).status, 200);
    const deleted = await server.request("DELETE", `${V3}/devices/D1`, {
      token,
      body: {
        auth: {
          type: "m.login.password",
          user: "alice",
          password: "pw",
          session: wrong.body.session,
        },
      },
    });
    assertEquals(deleted.status, 200);
    assertEquals((await whoD1()).status, 401);
    const gone = await server.request("DELETE", `${V3}/devices/D1`, { token });
    assertEquals(gone.status, 404);

    const badMany = await server.request("POST", `${V3}/delete_devices`, {
      token,
      body: { devices: "D2" },
    });
    assertEquals(badMany.body.errcode, "M_BAD_JSON");
    const noList = await server.request("POST", `${V3}/delete_devices`, { token, body: {} });
    assertEquals(noList.body.errcode, "M_MISSING_PARAM");
    const many = await server.request("POST", `${V3}/delete_devices`, {
      token,
      body: {
        devices: ["D2", "D3", "UNKNOWN"],
        auth: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: "alice" },
          password: "pw",
        },
      },
    });
    assertEquals(many.status, 200);
    const left = await server.request("GET", `${V3}/devices`, { token });
    assertEquals(left.body.devices.map((d: { device_id: string }) => d.device_id), [
      alice.deviceId,
    ]);
    for (const login of logins.slice(1)) {
      const who = await server.request("GET", `${V3}/account/whoami`, {
        token: login.access_token,
      });
      assertEquals(who.status, 401);
    }
  } finally {
    server.close();
  }
});

/** A device as listed, without the request-time field. */
function withoutLastSeen(device: Record<string, unknown>): Record<string, unknown> {
  const { last_seen_ts: _seen, ...rest } = device;
  return rest;
}
