"""matrix-nio (Debian's python3-matrix-nio) against a Tessera server.

Usage: /usr/bin/python3 nio_client.py HOMESERVER_URL SERVER_NAME

Registers a user, logs in as a second device, creates a room, sends a message and syncs until
the message comes back. nio speaks the legacy /_matrix/client/r0 paths and passes the access
token as ?access_token=. Prints one line per step; on a failed request it prints the request and
the server's answer and exits 1.
"""

import asyncio
import json
import sys
import time

from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    LoginResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)


class StepFailed(Exception):
    pass


def check(step, response, expected_type):
    """Fail the step unless nio parsed the answer as the expected response type."""
    if isinstance(response, expected_type):
        print(f"ok {step}", flush=True)
        return response
    detail = {"response": type(response).__name__}
    if isinstance(response, ErrorResponse):
        detail["status_code"] = response.status_code
        detail["message"] = response.message
    transport = getattr(response, "transport_response", None)
    if transport is not None:
        detail["http_status"] = transport.status
        detail["method"] = transport.method
        detail["path"] = transport.url.path
    raise StepFailed(f"{step}: {json.dumps(detail)}")


def new_client(homeserver, user=""):
    # Encryption needs a store and key upload, which this test does not exercise.
    config = AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)
    return AsyncClient(homeserver, user, config=config)


async def run(homeserver, server_name):
    localpart = f"nio{int(time.time() * 1000) % 100000000}"
    password = "nio password 1"
    user_id = f"@{localpart}:{server_name}"
    clients = []
    try:
        registrar = new_client(homeserver)
        clients.append(registrar)
        registered = check(
            "register",
            await registrar.register(localpart, password, "nio registration"),
            RegisterResponse,
        )
        if registered.user_id != user_id:
            raise StepFailed(f"register: user_id {registered.user_id!r}, expected {user_id!r}")

        client = new_client(homeserver, localpart)
        clients.append(client)
        logged_in = check("login", await client.login(password, "nio device"), LoginResponse)
        if logged_in.user_id != user_id:
            raise StepFailed(f"login: user_id {logged_in.user_id!r}, expected {user_id!r}")

        first = check("initial sync", await client.sync(timeout=0), SyncResponse)
        since = first.next_batch

        created = check(
            "create room",
            await client.room_create(name="nio room", topic="made by matrix-nio"),
            RoomCreateResponse,
        )
        room_id = created.room_id

        body = f"hello from matrix-nio {localpart}"
        sent = check(
            "send message",
            await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body}),
            RoomSendResponse,
        )

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            synced = check(
                "incremental sync", await client.sync(timeout=5000, since=since), SyncResponse
            )
            since = synced.next_batch
            room = synced.rooms.join.get(room_id)
            events = room.timeline.events if room else []
            for event in events:
                if isinstance(event, RoomMessageText) and event.event_id == sent.event_id:
                    if event.body != body or event.sender != user_id:
                        raise StepFailed(f"synced message differs: {event.source}")
                    print("ok message synced back", flush=True)
                    name = client.rooms[room_id].name if room_id in client.rooms else None
                    if name != "nio room":
                        raise StepFailed(f"room name in nio's state: {name!r}")
                    print("ok room name in state", flush=True)
                    return 0
        raise StepFailed("sync: the sent message never came back within 30 s")
    except StepFailed as failure:
        print(f"FAILED {failure}", flush=True)
        return 1
    finally:
        for c in clients:
            await c.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(run(sys.argv[1], sys.argv[2])))
