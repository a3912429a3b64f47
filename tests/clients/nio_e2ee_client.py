"""An end-to-end encrypting matrix-nio client (Debian's python3-matrix-nio + python3-olm),
driven step by step by tests/clients/nio_e2ee_test.ts.

Usage: /usr/bin/python3 nio_e2ee_client.py

Protocol: one JSON object per line on stdin, {"id": N, "cmd": NAME, ...arguments}; one JSON
object per line on stdout for each, {"id": N, "ok": true, "result": {...}} or
{"id": N, "ok": false, "error": "..."}. Progress goes to stderr, one line per step, so a
failing test can show how far nio got. The script ends at the end of its input.

Every request nio makes for the encryption is issued explicitly here (keys upload, keys query,
claim, sharing the group session over to-device, the send) and its answer checked, rather than
left to room_send's implicit retries, so a failure names the request that went wrong. nio speaks
the legacy /_matrix/client/r0 paths and passes the access token as ?access_token=.
"""

import asyncio
import json
import sys
import time
import traceback

import logbook
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinedMembersResponse,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LoginResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomKeyEvent,
    RoomMessageText,
    RoomSendResponse,
    ShareGroupSessionResponse,
    SyncResponse,
)
from nio.event_builders import EnableEncryptionBuilder
from nio.log import logger_group

MEGOLM = "m.megolm.v1.aes-sha2"
# Long-poll length for the sync loops; the loops themselves stop at the caller's deadline.
SYNC_TIMEOUT_MS = 2000
# nio retries a refused connection or timed-out request forever unless told otherwise; a server
# that went away should fail the step, not hang it.
MAX_TIMEOUTS = 2


class StepFailed(Exception):
    pass


def log(line):
    print(f"nio: {line}", file=sys.stderr, flush=True)


def check(step, response, expected_type):
    """Fail the step unless nio parsed the answer as the expected response type."""
    if isinstance(response, expected_type):
        log(f"ok {step}")
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


class E2eeSession:
    """One nio user with one encrypting device, and the state the steps share."""

    def __init__(self):
        self.client = None
        self.registrar = None
        # Room keys nio received over to-device Olm, as (sender, sender_key, room_id, session_id).
        self.room_keys = []

    async def close(self):
        for c in (self.registrar, self.client):
            if c is not None:
                await c.close()

    def _on_to_device(self, event):
        if isinstance(event, RoomKeyEvent):
            self.room_keys.append(
                {
                    "sender": event.sender,
                    "sender_key": event.sender_key,
                    "room_id": event.room_id,
                    "session_id": event.session_id,
                }
            )
            log(f"room key over to-device from {event.sender} for session {event.session_id}")

    async def sync(self, step, timeout_ms=SYNC_TIMEOUT_MS):
        """One sync, then what nio's sync_forever does after one: upload and query keys."""
        client = self.client
        response = check(step, await client.sync(timeout=timeout_ms), SyncResponse)
        if client.should_upload_keys:
            check("keys upload (replenish)", await client.keys_upload(), KeysUploadResponse)
        if client.should_query_keys:
            check("keys query (after sync)", await client.keys_query(), KeysQueryResponse)
        return response

    async def start(self, homeserver, server_name, localpart, password, store_dir):
        user_id = f"@{localpart}:{server_name}"
        plain = AsyncClientConfig(encryption_enabled=False, max_timeouts=MAX_TIMEOUTS)
        self.registrar = AsyncClient(homeserver, config=plain)
        registered = check(
            "register",
            await self.registrar.register(localpart, password, "nio registration"),
            RegisterResponse,
        )
        if registered.user_id != user_id:
            raise StepFailed(f"register: user_id {registered.user_id!r}, expected {user_id!r}")

        config = AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=False, max_timeouts=MAX_TIMEOUTS
        )
        self.client = AsyncClient(homeserver, localpart, store_path=store_dir, config=config)
        self.client.add_to_device_callback(self._on_to_device, (RoomKeyEvent,))
        check("login", await self.client.login(password, "nio e2ee device"), LoginResponse)
        client = self.client
        if client.olm is None:
            raise StepFailed("login: nio did not load its Olm account (is python3-olm installed?)")

        if not client.should_upload_keys:
            raise StepFailed("keys upload: a fresh nio device claims it has nothing to upload")
        uploaded = check("keys upload", await client.keys_upload(), KeysUploadResponse)
        uploaded_count = uploaded.signed_curve25519_count
        if not uploaded_count:
            raise StepFailed(
                "keys upload: one_time_key_counts in the answer has no signed_curve25519 count "
                f"(curve25519={uploaded.curve25519_count}, signed_curve25519={uploaded_count})"
            )

        first = check("initial sync", await client.sync(timeout=0), SyncResponse)
        synced_count = first.device_key_count.signed_curve25519
        keys = client.olm.account.identity_keys
        return {
            "user_id": client.user_id,
            "device_id": client.device_id,
            "ed25519": keys["ed25519"],
            "curve25519": keys["curve25519"],
            "uploaded_one_time_keys": uploaded_count,
            "synced_one_time_keys": synced_count,
        }

    async def create_encrypted_room(self, invite, timeout_ms):
        client = self.client
        created = check(
            "create encrypted room",
            await client.room_create(
                name="nio e2ee room",
                invite=invite,
                initial_state=[EnableEncryptionBuilder(algorithm=MEGOLM).as_dict()],
            ),
            RoomCreateResponse,
        )
        room_id = created.room_id
        await self._sync_until(
            f"room {room_id} to be known to nio as encrypted",
            lambda: room_id in client.rooms and client.rooms[room_id].encrypted,
            timeout_ms,
        )
        return {"room_id": room_id}

    async def wait_joined(self, room_id, user_id, timeout_ms):
        client = self.client

        def joined():
            room = client.rooms.get(room_id)
            return room is not None and user_id in room.users and user_id not in room.invited_users

        await self._sync_until(
            f"{user_id} to have joined {room_id} in nio's state", joined, timeout_ms
        )
        return {}

    async def _sync_until(self, what, condition, timeout_ms):
        deadline = time.monotonic() + timeout_ms / 1000
        while not condition():
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out after {timeout_ms} ms waiting for {what}")
            await self.sync("sync")

    async def send_encrypted(self, room_id, body, to_user, to_device):
        """Send an encrypted text, making each request of the key exchange explicitly."""
        client = self.client
        room = client.rooms.get(room_id)
        if room is None or not room.encrypted:
            raise StepFailed(f"send: nio does not know {room_id} as an encrypted room")

        members = check(
            "joined members", await client.joined_members(room_id), JoinedMembersResponse
        )
        member_ids = sorted(m.user_id for m in members.members)
        if to_user not in member_ids:
            raise StepFailed(f"joined members of {room_id} lack {to_user}: {member_ids}")

        # The peer's devices: nio queries users it tracks in encrypted rooms; make sure the peer
        # is among them even if a sync already queried it.
        client.olm.users_for_key_query.add(to_user)
        check("keys query", await client.keys_query(), KeysQueryResponse)
        devices = {d.id: d for d in client.device_store.active_user_devices(to_user)}
        if to_device not in devices:
            raise StepFailed(
                f"keys query: nio's device store has no device {to_device} of {to_user} after "
                f"/keys/query (it has {sorted(devices)}); a missing, unsigned or badly signed "
                "device key is dropped by nio"
            )
        peer = devices[to_device]

        missing = client.get_missing_sessions(room_id)
        if to_device not in missing.get(to_user, []):
            raise StepFailed(f"claim: nio already has an Olm session with {to_device}?")
        claimed = check("keys claim", await client.keys_claim(missing), KeysClaimResponse)
        claimed_keys = claimed.one_time_keys.get(to_user, {}).get(to_device, {})
        if not claimed_keys:
            raise StepFailed(
                f"keys claim: no one-time key for {to_user} {to_device}: "
                f"one_time_keys={json.dumps(claimed.one_time_keys)} failures={claimed.failures}"
            )
        if not client.olm.session_store.get(peer.curve25519):
            raise StepFailed(
                f"keys claim: nio made no Olm session from the claimed key "
                f"{json.dumps(claimed_keys)} (its signature did not verify against the device's "
                "ed25519 key?)"
            )

        shared = check(
            "share group session (to-device)",
            await client.share_group_session(room_id, ignore_unverified_devices=True),
            ShareGroupSessionResponse,
        )
        if (to_user, to_device) not in shared.users_shared_with:
            raise StepFailed(
                f"share group session: the room key did not reach {to_user} {to_device} "
                f"(shared with {sorted(shared.users_shared_with)}); /sendToDevice failed?"
            )
        session_id = client.olm.outbound_group_sessions[room_id].id

        sent = check(
            "send encrypted message",
            await client.room_send(
                room_id,
                "m.room.message",
                {"msgtype": "m.text", "body": body},
                ignore_unverified_devices=True,
            ),
            RoomSendResponse,
        )
        return {"event_id": sent.event_id, "session_id": session_id}

    async def wait_decrypted(self, room_id, event_id, timeout_ms):
        """Sync until the event arrives and nio decrypts it with a key it got over to-device."""
        client = self.client
        deadline = time.monotonic() + timeout_ms / 1000
        undecrypted = None
        while True:
            response = await self.sync("sync")
            room = response.rooms.join.get(room_id)
            for event in room.timeline.events if room else []:
                if event.event_id != event_id:
                    continue
                if isinstance(event, RoomMessageText):
                    return self._decrypted(event)
                if isinstance(event, MegolmEvent):
                    undecrypted = event
                else:
                    raise StepFailed(
                        f"event {event_id} arrived as {type(event).__name__}: {event.source}"
                    )
            if undecrypted is not None:
                # The room key may come in a later sync than the event; retry with what nio has.
                try:
                    event = client.decrypt_event(undecrypted)
                except Exception as error:  # nio raises EncryptionError while the key is missing
                    log(f"cannot decrypt {event_id} yet: {error}")
                else:
                    if isinstance(event, RoomMessageText):
                        return self._decrypted(event)
                    raise StepFailed(
                        f"{event_id} decrypted to {type(event).__name__}: {event.source}"
                    )
            if time.monotonic() > deadline:
                state = "arrived but stayed undecryptable" if undecrypted else "never arrived"
                session = undecrypted.session_id if undecrypted else None
                raise StepFailed(
                    f"timed out after {timeout_ms} ms: event {event_id} {state} "
                    f"(megolm session {session}); room keys nio got over to-device: "
                    f"{json.dumps(self.room_keys)}"
                )

    def _decrypted(self, event):
        log(f"ok decrypted {event.event_id}")
        return {
            "body": event.body,
            "sender": event.sender,
            # nio sets these on an event it decrypted from a megolm event.
            "session_id": getattr(event, "session_id", None),
            "decrypted": bool(event.decrypted),
            "verified": bool(event.verified),
            "room_keys": self.room_keys,
        }


async def main():
    # nio logs through logbook and silences everything below CRITICAL; its warnings (a device key
    # or one-time key whose signature fails, an Olm message it cannot decrypt) explain failures.
    logger_group.level = logbook.WARNING
    logbook.StderrHandler(level=logbook.WARNING, format_string="nio-lib {record.level_name} "
                          "{record.channel}: {record.message}").push_application()
    session = E2eeSession()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    handlers = {
        "start": session.start,
        "create_encrypted_room": session.create_encrypted_room,
        "wait_joined": session.wait_joined,
        "send_encrypted": session.send_encrypted,
        "wait_decrypted": session.wait_decrypted,
    }
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            request = json.loads(line)
            request_id = request.pop("id", None)
            name = request.pop("cmd", None)
            try:
                handler = handlers[name]
            except KeyError:
                answer = {"id": request_id, "ok": False, "error": f"unknown command {name!r}"}
            else:
                try:
                    answer = {"id": request_id, "ok": True, "result": await handler(**request)}
                except StepFailed as failure:
                    log(f"FAILED {failure}")
                    answer = {"id": request_id, "ok": False, "error": str(failure)}
                except Exception as error:
                    # The whole traceback goes to the log; the answer names the exception.
                    log(traceback.format_exc())
                    detail = f"{name}: {type(error).__name__}: {error} (traceback in the log)"
                    answer = {"id": request_id, "ok": False, "error": detail}
            print(json.dumps(answer), flush=True)
    finally:
        await session.close()


if __name__ == "__main__":
    asyncio.run(main())
