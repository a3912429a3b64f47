/**
 * Every Deno KV key the server writes is built here, so the layout can be read in one place.
 * Maps are named by what they map (`eventid_position`: event ID -> log position), Conduit-style.
 * The event store's maps take an optional namespace prefix so replay can rebuild them beside
 * the live ones in the same database.
 */

/** The server's signing key seed (one per server). */
export function serverSigningSeedKey(): Deno.KvKey {
  return ["server_signingseed"];
}

/** Key builders for other servers' signing keys (the key ring's cache and the notary's). */
export const serverKeyKeys = {
  /**
   * (serverName, keyId) -> StoredServerKey: a remote server's public key, its validity
   * (valid_until_ts, or expired_ts for an old key) and the signed key document it came in.
   */
  verifyKey: (serverName: string, keyId: string): Deno.KvKey => [
    "servername_keyid_verifykey",
    serverName,
    keyId,
  ],
  /** Every cached key of one server. */
  verifyKeyPrefix: (serverName: string): Deno.KvKey => ["servername_keyid_verifykey", serverName],
  /** serverName -> KeyFetchFailure: consecutive failed key fetches and when to try again. */
  fetchFailure: (serverName: string): Deno.KvKey => ["servername_keyfetchfailure", serverName],
};

/**
 * hostname -> CachedWellKnown: a server's `/.well-known/matrix/server` answer (the document, or
 * null when there was none usable) and when it expires; shared by every process and isolate.
 */
export function hostnameWellKnownKey(hostname: string): Deno.KvKey {
  return ["hostname_wellknown", hostname];
}

/** Names of the event store's maps; the log maps hold facts, the rest are projections. */
export const EVENT_STORE_MAPS = {
  /** roomId -> RoomHead: last/first position, extremities, current state group, version. */
  roomid_head: "roomid_head",
  /** (roomId, position) -> LogEntry: event ID, status, arrival seq, first PDU chunk. */
  roomid_log: "roomid_log",
  /** (eventId, chunk index >= 1) -> bytes: the rest of a PDU too big for its log entry. */
  eventid_pduchunk: "eventid_pduchunk",
  /** eventId -> {room_id, position}: where the event sits in its room's log. */
  eventid_position: "eventid_position",
  /** eventId -> {before, after}: the state groups holding the state around the event. */
  eventid_stategroups: "eventid_stategroups",
  /** (roomId, type, state_key) -> eventId: the room's current state. */
  roomid_state: "roomid_state",
  /** (roomId, userId) -> {membership, event_id}: members of a room. */
  roomuserid_membership: "roomuserid_membership",
  /** (userId, roomId) -> {membership, event_id}: rooms of a user. */
  userroomid_membership: "userroomid_membership",
  /** (roomId, groupId) -> StateGroupRecord: a state delta against a parent group. */
  roomid_stategroup: "roomid_stategroup",
  /** (roomId, groupId, chunk index >= 1) -> bytes: the rest of a large delta. */
  roomid_stategroupchunk: "roomid_stategroupchunk",
  /**
   * (roomId, stagedId) -> StagedStateRecord: a state snapshot staged from outside (a join's or a
   * gap's state), content-addressed; its layers are state groups with string IDs
   * (`<stagedId>.<n>`), written in earlier commits than this record. Facts, like accounts:
   * replay re-stages them and compares.
   */
  roomid_stagedstate: "roomid_stagedstate",
  /**
   * eventId -> OutlierRecord: an event held outside any timeline (auth chains, a join's state),
   * PDU chunked like the log's (rest under `eventid_outlierchunk`). Facts: replay copies them.
   */
  eventid_outlier: "eventid_outlier",
  /** (eventId, chunk index >= 1) -> bytes: the rest of an outlier's PDU. */
  eventid_outlierchunk: "eventid_outlierchunk",
  /** userId -> last sync time: the sync read's blind barrier write. */
  userid_syncbarrier: "userid_syncbarrier",
  /** (roomId, eventId) -> redaction event IDs: accepted redactions naming the event, in arrival order. */
  roomeventid_redactions: "roomeventid_redactions",
  /**
   * (roomId, position, userId) -> MemberChangeRecord: a change of a user's membership in the
   * room's current state, at the log position of the forward event whose append caused it
   * (only real changes: a displayname edit keeps the membership and writes nothing).
   */
  roomid_memberchange: "roomid_memberchange",
  /** roomId -> {position}: the room's last member change; its versionstamp dates that commit. */
  roomid_memberchangehead: "roomid_memberchangehead",
  /**
   * (commit versionstamp) -> roomId: the commits that changed memberships, in commit order, so
   * "did any membership change after a sync token" is one short list. Each commit appends to one
   * room, so a commit has one entry. Replay rebuilds it but cannot compare it: a rebuilt store's
   * commits have other versionstamps.
   */
  memberchangestamp_roomid: "memberchangestamp_roomid",
  /**
   * The room's current non-member state in bytes, for the state caps: (roomId, "entry", type,
   * state_key) -> {sender, bytes} per entry, (roomId, "room") -> total bytes and (roomId, "user",
   * userId) -> bytes of the entries that user sent. Moved with current state under the head
   * check, so plain numbers suffice (no summing).
   */
  roomid_stateusage: "roomid_stateusage",
  /**
   * (roomId, serverName) -> number: how many users of that server are joined to the room in its
   * current state; a server with none has no entry. Moved with current state in the membership
   * change's commit (kv/room_servers.ts), so "which servers are in the room" and "is this server
   * in it" read servers, not every member.
   */
  roomid_servers: "roomid_servers",
  /**
   * (roomId, missing event ID) -> number: the room's backward extremities, events cited as prev
   * events by an event of the room's log but not in that log themselves (another room's event
   * counts as missing), with the position of the event that last cited it. Set and cleared in
   * the commit of the append that creates or fills them (kv/backward_extremities.ts); /messages
   * backfills when its walk reaches that position (domain/federation/backfill.ts).
   */
  roomid_backwardextremity: "roomid_backwardextremity",
  /**
   * (roomId, parentId, position) -> RelationRecord: the accepted events relating to a parent
   * (`m.relates_to` with `rel_type` and `event_id`), in log order (see kv/relation_projection.ts).
   */
  roomeventid_children: "roomeventid_children",
  /** (roomId, parentId, rel_type, position) -> RelationRecord: the same, one rel_type at a time. */
  roomeventidreltype_children: "roomeventidreltype_children",
  /**
   * (roomId, parentId) -> RelationSummary: what the bundled aggregations start from (edits and
   * references counted, a thread's count, latest reply and first and last positions).
   */
  roomeventid_relationsummary: "roomeventid_relationsummary",
  /** (roomId, rootId, userId) -> number: a user's replies in a thread (participation). */
  roomeventiduser_threadreplies: "roomeventiduser_threadreplies",
  /** (roomId, position of the thread's latest reply, rootId) -> true: threads by activity. */
  roomid_threadactivity: "roomid_threadactivity",
  /** (roomId, origin_server_ts, position) -> eventId: accepted events by timestamp. */
  roomid_tsevent: "roomid_tsevent",
  /**
   * (roomId, term, position) -> SearchPostingRecord: the full-text search index, one entry per
   * distinct term of an accepted event's searchable text (kv/search_projection.ts). Written in
   * the event's commit; an accepted redaction deletes its target's entries in its own commit.
   */
  roomid_searchterm: "roomid_searchterm",
  /**
   * roomId -> {position}: the room's latest accepted forward event of a sliding sync bump type
   * (domain/sliding_sync/room_list.ts BUMP_EVENT_TYPES), set in that event's commit; the entry's
   * versionstamp dates the bump across rooms (kv/room_list_projection.ts).
   */
  roomid_bump: "roomid_bump",
  /**
   * roomId -> {position}: the room's latest accepted forward event of any type, set in that
   * event's commit; the entry's versionstamp orders sliding sync's lists (MSC4186 "Activity
   * ordering": every event the user can see moves the room up, not only bump events).
   */
  roomid_activity: "roomid_activity",
  /** roomId -> {type}: the accepted create event's `content.type` (null without one). */
  roomid_roomtype: "roomid_roomtype",
} as const;

/** One of the event store's map names. */
export type EventStoreMap = keyof typeof EVENT_STORE_MAPS;

/** Maps that replay rebuilds and compares: the log (rewritten by replay) and every projection. */
export const REPLAYED_MAPS: readonly EventStoreMap[] = [
  "roomid_head",
  "roomid_log",
  "eventid_pduchunk",
  "eventid_position",
  "eventid_stategroups",
  "roomid_state",
  "roomuserid_membership",
  "userroomid_membership",
  "roomid_stategroup",
  "roomid_stategroupchunk",
  "roomid_stagedstate",
  "eventid_outlier",
  "eventid_outlierchunk",
  "roomeventid_redactions",
  "roomid_memberchange",
  "roomid_memberchangehead",
  "roomid_stateusage",
  "roomid_servers",
  "roomid_backwardextremity",
  "roomeventid_children",
  "roomeventidreltype_children",
  "roomeventid_relationsummary",
  "roomeventiduser_threadreplies",
  "roomid_threadactivity",
  "roomid_tsevent",
  "roomid_searchterm",
  "roomid_bump",
  "roomid_activity",
  "roomid_roomtype",
];

/** Key builders for the event store, all under one namespace prefix (empty for live data). */
export class EventStoreKeys {
  /** `namespace` is prepended to every key; replay uses it to build projections aside. */
  constructor(readonly namespace: Deno.KvKey = []) {}

  /** The prefix holding every entry of one map. */
  map(name: EventStoreMap): Deno.KvKey {
    return [...this.namespace, EVENT_STORE_MAPS[name]];
  }

  /** A room's head record. */
  head(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_head", roomId];
  }

  /** One log entry of a room. */
  log(roomId: string, position: number): Deno.KvKey {
    return [...this.namespace, "roomid_log", roomId, position];
  }

  /** All log entries of a room, in position order. */
  logPrefix(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_log", roomId];
  }

  /** A continuation chunk (index >= 1) of an event's PDU. */
  pduChunk(eventId: string, index: number): Deno.KvKey {
    return [...this.namespace, "eventid_pduchunk", eventId, index];
  }

  /** All continuation chunks of an event's PDU. */
  pduChunkPrefix(eventId: string): Deno.KvKey {
    return [...this.namespace, "eventid_pduchunk", eventId];
  }

  /** Event ID -> log position index. */
  eventPosition(eventId: string): Deno.KvKey {
    return [...this.namespace, "eventid_position", eventId];
  }

  /** Event ID -> state groups before and after it. */
  eventStateGroups(eventId: string): Deno.KvKey {
    return [...this.namespace, "eventid_stategroups", eventId];
  }

  /** One current state entry of a room. */
  currentState(roomId: string, type: string, stateKey: string): Deno.KvKey {
    return [...this.namespace, "roomid_state", roomId, type, stateKey];
  }

  /** A room's whole current state, or one event type's entries when `type` is given. */
  currentStatePrefix(roomId: string, type?: string): Deno.KvKey {
    const prefix = [...this.namespace, "roomid_state", roomId];
    return type === undefined ? prefix : [...prefix, type];
  }

  /** A user's membership as seen from the room. */
  roomMember(roomId: string, userId: string): Deno.KvKey {
    return [...this.namespace, "roomuserid_membership", roomId, userId];
  }

  /** All members of a room. */
  roomMemberPrefix(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomuserid_membership", roomId];
  }

  /** A user's membership as seen from the user. */
  userRoom(userId: string, roomId: string): Deno.KvKey {
    return [...this.namespace, "userroomid_membership", userId, roomId];
  }

  /** All rooms a user has a membership in. */
  userRoomPrefix(userId: string): Deno.KvKey {
    return [...this.namespace, "userroomid_membership", userId];
  }

  /** A room's latest bump event (roomid_bump). */
  roomBump(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_bump", roomId];
  }

  /** A room's latest accepted forward event (roomid_activity). */
  roomActivity(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_activity", roomId];
  }

  /** A room's create type (roomid_roomtype). */
  roomType(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_roomtype", roomId];
  }

  /** A state group record (delta plus its first chunk); string IDs are staged layers. */
  stateGroup(roomId: string, groupId: number | string): Deno.KvKey {
    return [...this.namespace, "roomid_stategroup", roomId, groupId];
  }

  /** A continuation chunk (index >= 1) of a state group's delta. */
  stateGroupChunk(roomId: string, groupId: number | string, index: number): Deno.KvKey {
    return [...this.namespace, "roomid_stategroupchunk", roomId, groupId, index];
  }

  /** All continuation chunks of a state group's delta. */
  stateGroupChunkPrefix(roomId: string, groupId: number | string): Deno.KvKey {
    return [...this.namespace, "roomid_stategroupchunk", roomId, groupId];
  }

  /** A staged state's record (see `roomid_stagedstate`). */
  stagedState(roomId: string, stagedId: string): Deno.KvKey {
    return [...this.namespace, "roomid_stagedstate", roomId, stagedId];
  }

  /** An outlier's record (see `eventid_outlier`). */
  outlier(eventId: string): Deno.KvKey {
    return [...this.namespace, "eventid_outlier", eventId];
  }

  /** A continuation chunk (index >= 1) of an outlier's PDU. */
  outlierChunk(eventId: string, index: number): Deno.KvKey {
    return [...this.namespace, "eventid_outlierchunk", eventId, index];
  }

  /** All continuation chunks of an outlier's PDU. */
  outlierChunkPrefix(eventId: string): Deno.KvKey {
    return [...this.namespace, "eventid_outlierchunk", eventId];
  }

  /** The key a sync read blindly writes to take its barrier versionstamp. */
  syncBarrier(userId: string): Deno.KvKey {
    return [...this.namespace, "userid_syncbarrier", userId];
  }

  /** The accepted redactions of a room naming `eventId` (whether they apply is decided on read). */
  redactions(roomId: string, eventId: string): Deno.KvKey {
    return [...this.namespace, "roomeventid_redactions", roomId, eventId];
  }

  /** A change of `userId`'s membership caused by the event at `position` of the room. */
  memberChange(roomId: string, position: number, userId: string): Deno.KvKey {
    return [...this.namespace, "roomid_memberchange", roomId, position, userId];
  }

  /** A room's member changes, in log order. */
  memberChangePrefix(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_memberchange", roomId];
  }

  /** A room's last member change marker, rewritten by every commit that changes a membership. */
  memberChangeHead(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_memberchangehead", roomId];
  }

  /** Commits that changed memberships, by versionstamp (append the commit's versionstamp). */
  memberChangeStampPrefix(): Deno.KvKey {
    return [...this.namespace, "memberchangestamp_roomid"];
  }

  /** Size and sender of one non-member current state entry (see `roomid_stateusage`). */
  stateUsageEntry(roomId: string, type: string, stateKey: string): Deno.KvKey {
    return [...this.namespace, "roomid_stateusage", roomId, "entry", type, stateKey];
  }

  /** All of a room's state usage entries and totals. */
  stateUsagePrefix(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_stateusage", roomId];
  }

  /** Bytes of a room's non-member current state. */
  stateUsageRoom(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_stateusage", roomId, "room"];
  }

  /** The number of `serverName`'s users joined to a room (see `roomid_servers`). */
  roomServer(roomId: string, serverName: string): Deno.KvKey {
    return [...this.namespace, "roomid_servers", roomId, serverName];
  }

  /** Every server with a user joined to a room. */
  roomServerPrefix(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_servers", roomId];
  }

  /** A backward extremity of a room: an event its log cites but lacks. */
  backwardExtremity(roomId: string, eventId: string): Deno.KvKey {
    return [...this.namespace, "roomid_backwardextremity", roomId, eventId];
  }

  /** Every backward extremity of a room. */
  backwardExtremityPrefix(roomId: string): Deno.KvKey {
    return [...this.namespace, "roomid_backwardextremity", roomId];
  }

  /** One search index entry: `term` occurs in the event at `position` of the room. */
  searchPosting(roomId: string, term: string, position: number): Deno.KvKey {
    return [...this.namespace, "roomid_searchterm", roomId, term, position];
  }

  /** A room's search index, or the entries of `term` and the terms after it (a range start). */
  searchTermPrefix(roomId: string, term?: string): Deno.KvKey {
    const prefix = [...this.namespace, "roomid_searchterm", roomId];
    return term === undefined ? prefix : [...prefix, term];
  }

  /** Bytes of a room's non-member current state sent by `userId`. */
  stateUsageUser(roomId: string, userId: string): Deno.KvKey {
    return [...this.namespace, "roomid_stateusage", roomId, "user", userId];
  }

  /** A child of `parentId` at `position`; without position, all of the parent's children. */
  children(roomId: string, parentId: string, position?: number): Deno.KvKey {
    const prefix = [...this.namespace, "roomeventid_children", roomId, parentId];
    return position === undefined ? prefix : [...prefix, position];
  }

  /** A child of `parentId` by rel_type; without position, all of that rel_type's children. */
  typedChildren(roomId: string, parentId: string, relType: string, position?: number): Deno.KvKey {
    const prefix = [...this.namespace, "roomeventidreltype_children", roomId, parentId, relType];
    return position === undefined ? prefix : [...prefix, position];
  }

  /** The relation summary of a parent event. */
  relationSummary(roomId: string, parentId: string): Deno.KvKey {
    return [...this.namespace, "roomeventid_relationsummary", roomId, parentId];
  }

  /** How many replies `userId` sent in the thread of `rootId`. */
  threadReplies(roomId: string, rootId: string, userId: string): Deno.KvKey {
    return [...this.namespace, "roomeventiduser_threadreplies", roomId, rootId, userId];
  }

  /** A thread's place in the room's threads by latest activity; without position, all of them. */
  threadActivity(roomId: string, position?: number, rootId?: string): Deno.KvKey {
    const prefix = [...this.namespace, "roomid_threadactivity", roomId];
    if (position === undefined) return prefix;
    return rootId === undefined ? [...prefix, position] : [...prefix, position, rootId];
  }

  /** An accepted event by timestamp; without ts, the room's whole index. */
  timestampEvent(roomId: string, ts?: number, position?: number): Deno.KvKey {
    const prefix = [...this.namespace, "roomid_tsevent", roomId];
    if (ts === undefined) return prefix;
    return position === undefined ? [...prefix, ts] : [...prefix, ts, position];
  }
}

/** (userId, deviceId, txnId) -> {room_id, event_id}: client transaction IDs of sent events. */
export function transactionKey(userId: string, deviceId: string, txnId: string): Deno.KvKey {
  return ["userdevicetxnid_event", userId, deviceId, txnId];
}

/** (eventId, deviceId) -> txnId: which device sent an event under which transaction ID. */
export function eventTransactionKey(eventId: string, deviceId: string): Deno.KvKey {
  return ["eventiddeviceid_txnid", eventId, deviceId];
}

// --- User data: profiles, account data, receipts, typing, presence -------------------------
// Change indexes end in the writing commit's versionstamp (`kv.commitVersionstamp()`), so
// "changed since a sync token" is one range read; each holds one entry per live record.

/** userId -> profile fields (UTF-8 JSON bytes). */
export function profileKey(userId: string): Deno.KvKey {
  return ["userid_profile", userId];
}

/** (userId, roomId or "" for global, type) -> account data content (UTF-8 JSON bytes). */
export function accountDataKey(userId: string, roomId: string | null, type: string): Deno.KvKey {
  return ["userid_accountdata", userId, roomId ?? "", type];
}

/** (userId, versionstamp) -> {roomId, type}: a user's account data changes by commit. */
export function accountDataChangePrefix(userId: string): Deno.KvKey {
  return ["userid_accountdatachange", userId];
}

/** userId -> AccountDataUsage: the global types and bytes the account data caps count. */
export function accountDataUsageKey(userId: string): Deno.KvKey {
  return ["userid_accountdatausage", userId];
}

/** (roomId, userId, receipt type, thread or "") -> the user's latest receipt. */
export function receiptKey(
  roomId: string,
  userId: string,
  receiptType: string,
  threadId: string | undefined,
): Deno.KvKey {
  return ["roomuserid_receipt", roomId, userId, receiptType, threadId ?? ""];
}

/** Every latest receipt of a room, or of one user in it. */
export function receiptPrefix(roomId: string, userId?: string): Deno.KvKey {
  return userId === undefined
    ? ["roomuserid_receipt", roomId]
    : ["roomuserid_receipt", roomId, userId];
}

/** (roomId, versionstamp) -> receipt key parts: a room's receipt changes by commit. */
export function receiptChangePrefix(roomId: string): Deno.KvKey {
  return ["roomid_receiptchange", roomId];
}

/** roomId -> nothing: rewritten by every receipt in the room, its versionstamp says "changed". */
export function receiptHeadKey(roomId: string): Deno.KvKey {
  return ["roomid_receipthead", roomId];
}

/** roomId -> {userId: expiry}: who is typing in a room. */
export function typingKey(roomId: string): Deno.KvKey {
  return ["roomid_typing", roomId];
}

/**
 * roomId -> the earliest expiry (ms) in the room's typing record, while anyone types there:
 * what the fleet's typing expiry job lists, written in the commit of every typing change.
 */
export function typingExpiryKey(roomId: string): Deno.KvKey {
  return ["roomid_typingexpiry", roomId];
}

/** Every room with someone typing (see typingExpiryKey). */
export function typingExpiryPrefix(): Deno.KvKey {
  return ["roomid_typingexpiry"];
}

/** userId -> presence record. */
export function presenceKey(userId: string): Deno.KvKey {
  return ["userid_presence", userId];
}

/** (versionstamp) -> userId: presence changes by commit. */
export function presenceChangePrefix(): Deno.KvKey {
  return ["presencechange_userid"];
}

// --- Rooms: aliases, the published room directory, forgotten rooms ----------------------------

/** Room alias -> {room_id, creator}: local aliases (room directory). */
export function aliasRoomIdKey(alias: string): Deno.KvKey {
  return ["alias_roomid", alias];
}

/** (roomId, alias) -> true: the local aliases of a room. */
export function roomIdAliasKey(roomId: string, alias?: string): Deno.KvKey {
  return alias === undefined ? ["roomid_alias", roomId] : ["roomid_alias", roomId, alias];
}

/** roomId -> true: rooms published in the public room directory (the whole map when no room). */
export function roomIdPublishedKey(roomId?: string): Deno.KvKey {
  return roomId === undefined ? ["roomid_published"] : ["roomid_published", roomId];
}

/** (userId, roomId) -> true: rooms a user has forgotten. */
export function userRoomIdForgottenKey(userId: string, roomId: string): Deno.KvKey {
  return ["userroomid_forgotten", userId, roomId];
}

/** Key builders for accounts, devices and their secrets (tokens appear only as SHA-256 hashes). */
export const accountKeys = {
  /** userId -> AccountRecord. */
  account: (userId: string): Deno.KvKey => ["userid_account", userId],
  /** (userId, deviceId) -> DeviceRecord. */
  device: (userId: string, deviceId: string): Deno.KvKey => ["userid_device", userId, deviceId],
  /** All devices of a user. */
  devicePrefix: (userId: string): Deno.KvKey => ["userid_device", userId],
  /** SHA-256 of an access token -> AccessTokenRecord. */
  accessToken: (hash: string): Deno.KvKey => ["tokenhash_session", hash],
  /** SHA-256 of a refresh token -> RefreshTokenRecord. */
  refreshToken: (hash: string): Deno.KvKey => ["refreshtokenhash_device", hash],
  /** User-interactive auth session ID -> UiaSessionRecord (expires). */
  uiaSession: (id: string): Deno.KvKey => ["uiasessionid_state", id],
  /** SHA-256 of a login token -> LoginTokenRecord (expires, single use). */
  loginToken: (hash: string): Deno.KvKey => ["logintokenhash_user", hash],
  /** userId -> FailureBucket: recent failed password attempts (expires once drained). */
  passwordFailures: (userId: string): Deno.KvKey => ["userid_passwordfailures", userId],
  /** userId -> true: a deactivation whose follow-up work (leaving rooms, ...) is unfinished. */
  pendingDeactivation: (userId: string): Deno.KvKey => ["userid_pendingdeactivation", userId],
  /** All unfinished deactivations. */
  pendingDeactivationPrefix: (): Deno.KvKey => ["userid_pendingdeactivation"],
  /** SHA-256 of an OpenID token -> OpenIdTokenRecord (expires). */
  openIdToken: (hash: string): Deno.KvKey => ["openidtokenhash_user", hash],
};

/** Key builders for third-party identifiers (domain/ports/threepid_store.ts). */
export const threepidKeys = {
  /** sid -> ThreepidSessionRecord: a validation session this server mailed (expires). */
  session: (sid: string): Deno.KvKey => ["threepidsid_session", sid],
  /** (medium, client secret, address) -> sid: the pending session a resend reuses (expires). */
  sessionBySecret: (medium: string, clientSecret: string, address: string): Deno.KvKey => [
    "threepidsecret_sid",
    medium,
    clientSecret,
    address,
  ],
  /** (userId, medium, address) -> UserThreepidRecord: identifiers of an account. */
  userThreepid: (userId: string, medium: string, address: string): Deno.KvKey => [
    "userid_threepid",
    userId,
    medium,
    address,
  ],
  /** All identifiers of an account. */
  userThreepidPrefix: (userId: string): Deno.KvKey => ["userid_threepid", userId],
  /** (medium, address) -> userId: who an identifier belongs to (login, password reset). */
  owner: (medium: string, address: string): Deno.KvKey => ["threepid_userid", medium, address],
  /** (userId, medium, address, idServer) -> true: where the user's identifier was bound. */
  binding: (userId: string, medium: string, address: string, idServer: string): Deno.KvKey => [
    "userid_threepidbinding",
    userId,
    medium,
    address,
    idServer,
  ],
  /** Bindings of a user, or of one identifier of the user. */
  bindingPrefix: (userId: string, medium?: string, address?: string): Deno.KvKey =>
    medium === undefined || address === undefined
      ? ["userid_threepidbinding", userId]
      : ["userid_threepidbinding", userId, medium, address],
};

/** (userId, filterId) -> filter JSON: a user's uploaded sync filters. */
export function filterKey(userId: string, filterId: string): Deno.KvKey {
  return ["userid_filter", userId, filterId];
}

/** userId -> number: how many filters the user has stored (for the cap). */
export function filterCountKey(userId: string): Deno.KvKey {
  return ["userid_filtercount", userId];
}

/** (userId, deviceId, roomId) -> lazy-loaded member events the device was sent in the room. */
export function sentMembersKey(userId: string, deviceId: string, roomId: string): Deno.KvKey {
  return ["userdeviceroom_sentmembers", userId, deviceId, roomId];
}

/** Key builders for sliding-sync connections (kv/sliding_sync_connection_store.ts). */
export const slidingConnectionKeys = {
  /** (user, device, conn_id) -> the connection's head record (first chunk, chunk count). */
  head: (userId: string, deviceId: string, connId: string): Deno.KvKey => [
    "slidingconn_head",
    userId,
    deviceId,
    connId,
  ],
  /** (user, device, conn_id, index >= 1) -> a continuation chunk of the head. */
  headChunk: (userId: string, deviceId: string, connId: string, index: number): Deno.KvKey => [
    "slidingconn_headchunk",
    userId,
    deviceId,
    connId,
    index,
  ],
  /** (user, device, conn_id, room) -> RoomEntry: what the connection sent of the room. */
  room: (userId: string, deviceId: string, connId: string, roomId: string): Deno.KvKey => [
    "slidingconn_room",
    userId,
    deviceId,
    connId,
    roomId,
  ],
};

// --- Push rules and notifications ----------------------------------------------------------

/** Key builders for push rules and notifications. */
export const pushKeys = {
  /** userId -> the user's push rule changes (UTF-8 JSON bytes). */
  pushRules: (userId: string): Deno.KvKey => ["userid_pushrules", userId],
  /**
   * Rewritten in the commit of every push rule edit (anyone's): its versionstamp tells a
   * process whether the rulesets it derived earlier still stand (domain/push/push_rule_service).
   */
  pushRulesVersion: (): Deno.KvKey => ["pushrules_version"],
  /** (userId, roomId, position) -> {event, thread, highlight}: counts since a read receipt. */
  roomNotification: (userId: string, roomId: string, position: number): Deno.KvKey => [
    "userroomid_notification",
    userId,
    roomId,
    position,
  ],
  /** All of a user's notifications in a room, in log order. */
  roomNotificationPrefix: (userId: string, roomId: string): Deno.KvKey => [
    "userroomid_notification",
    userId,
    roomId,
  ],
  /** (userId, ts, roomId, position) -> {event, thread, highlight, actions}: GET /notifications. */
  userNotification: (userId: string, ts: number, roomId: string, position: number): Deno.KvKey => [
    "userid_notification",
    userId,
    ts,
    roomId,
    position,
  ],
  /** All of a user's notifications across rooms, by time. */
  userNotificationPrefix: (userId: string): Deno.KvKey => ["userid_notification", userId],
  /** (userId, roomId, thread) -> position of the user's latest own event: an implicit receipt. */
  ownEvent: (userId: string, roomId: string, threadId: string): Deno.KvKey => [
    "userroomid_ownevent",
    userId,
    roomId,
    threadId,
  ],
  /** The user's own-event marks in a room. */
  ownEventPrefix: (userId: string, roomId: string): Deno.KvKey => [
    "userroomid_ownevent",
    userId,
    roomId,
  ],
  /** userId -> the user's pushers (UTF-8 JSON bytes of a list). */
  pushers: (userId: string): Deno.KvKey => ["userid_pushers", userId],
  /** (appId, pushkey, userId) -> pusher ID: who holds a pusher for an app's push key. */
  pushkeyHolder: (appId: string, pushkey: string, userId: string): Deno.KvKey => [
    "apppushkeyuser_pusher",
    appId,
    pushkey,
    userId,
  ],
  /** Every holder of an app's push key. */
  pushkeyHolderPrefix: (appId: string, pushkey: string): Deno.KvKey => [
    "apppushkeyuser_pusher",
    appId,
    pushkey,
  ],
};

// --- Wake keys: what a waiter in another process watches ---------------------------------

/**
 * Key builders for wake keys: tiny records that writers overwrite (a blind `set`, never
 * checked, so they add no conflicts) in the same commit as a change a waiter may want. Only
 * their versionstamps matter: a waiter in another process or isolate watches them (`kv.watch`
 * on Deno Deploy, a poll on a local file) and wakes when one moves past what it has read.
 */
export const wakeKeys = {
  /** userId -> wake: the user's own sync streams changed (to-device, account data, invites...). */
  user: (userId: string): Deno.KvKey => ["userid_wake", userId],
  /** roomId -> wake: the room's timeline or ephemeral data (typing, receipts) changed. */
  room: (roomId: string): Deno.KvKey => ["roomid_wake", roomId],
  /** outbox stream -> wake: an entry was queued for some destination of the stream. */
  outbox: (stream: string): Deno.KvKey => ["outboxstream_wake", stream],
};

// --- Outbox: work for other servers, written in the commit that causes it -----------------

/** Key builders for outbox streams (one ordered stream per destination, per stream kind). */
export const outboxKeys = {
  /** (stream, destination, ...order) -> the entry's payload. */
  entry: (stream: string, destination: string, order: readonly (string | number)[]): Deno.KvKey => [
    "outbox_entry",
    stream,
    destination,
    ...order,
  ],
  /** A destination's entries, in order. */
  entryPrefix: (stream: string, destination: string): Deno.KvKey => [
    "outbox_entry",
    stream,
    destination,
  ],
  /** (stream, destination) -> marker rewritten by every append: the destination has work. */
  pending: (stream: string, destination: string): Deno.KvKey => [
    "outbox_pending",
    stream,
    destination,
  ],
  /** Destinations of a stream with work. */
  pendingPrefix: (stream: string): Deno.KvKey => ["outbox_pending", stream],
  /** (stream, destination) -> OutboxState: the sender's lease and the retry backoff. */
  state: (stream: string, destination: string): Deno.KvKey => [
    "outbox_state",
    stream,
    destination,
  ],
  /** A stream's state records: destinations backed off or leased (the next retry's time). */
  statePrefix: (stream: string): Deno.KvKey => ["outbox_state", stream],
};

// --- End-to-end encryption: device keys, cross-signing, device lists, to-device, backup -----
// Device-list changes carry a per-user stream position and a prev_id chain from the start, so
// federation's m.device_list_update is one more consumer of the same log (see
// kv/device_list_log.ts).

/** Key builders for E2EE maps. */
export const e2eeKeys = {
  /** (userId, deviceId) -> the device's signed device keys (UTF-8 JSON bytes). */
  deviceKeys: (userId: string, deviceId: string): Deno.KvKey => [
    "userdeviceid_devicekeys",
    userId,
    deviceId,
  ],
  /** All device keys of a user. */
  deviceKeysPrefix: (userId: string): Deno.KvKey => ["userdeviceid_devicekeys", userId],
  /**
   * (userId, deviceId, algorithm, keyId) -> {seq, claimed?}: which upload stored the one-time
   * key, so a re-upload finds it by ID; the key itself sits in the claim queue under that seq.
   * A claim leaves `claimed: true` here for a while, so a retried upload cannot put it back.
   */
  oneTimeKey: (userId: string, deviceId: string, algorithm: string, keyId: string): Deno.KvKey => [
    "userdevicealgkeyid_onetimekey",
    userId,
    deviceId,
    algorithm,
    keyId,
  ],
  /** A device's one-time keys, or those of one algorithm. */
  oneTimeKeyPrefix: (userId: string, deviceId: string, algorithm?: string): Deno.KvKey =>
    algorithm === undefined
      ? ["userdevicealgkeyid_onetimekey", userId, deviceId]
      : ["userdevicealgkeyid_onetimekey", userId, deviceId, algorithm],
  /**
   * (userId, deviceId, algorithm, seq, keyId) -> key: the claim queue, in upload order (the spec
   * hands keys out oldest upload first); a claim deletes the first entry under a check.
   */
  oneTimeKeyQueue: (
    userId: string,
    deviceId: string,
    algorithm: string,
    seq: number,
    keyId: string,
  ): Deno.KvKey => [
    "userdevicealgseqkeyid_onetimekeyqueue",
    userId,
    deviceId,
    algorithm,
    seq,
    keyId,
  ],
  /** A device's claim queue, or one algorithm's. */
  oneTimeKeyQueuePrefix: (userId: string, deviceId: string, algorithm?: string): Deno.KvKey =>
    algorithm === undefined
      ? ["userdevicealgseqkeyid_onetimekeyqueue", userId, deviceId]
      : ["userdevicealgseqkeyid_onetimekeyqueue", userId, deviceId, algorithm],
  /**
   * (userId, deviceId, algorithm, "uploaded" | "claimed") -> KvU64: one-time keys ever queued and
   * ever claimed, summed in the commits that queue and claim them, so their difference is the
   * queue's length without listing it on every sync, and concurrent claims never conflict on it.
   */
  oneTimeKeyCount: (
    userId: string,
    deviceId: string,
    algorithm: string,
    kind: "uploaded" | "claimed",
  ): Deno.KvKey => ["userdevicealg_onetimekeycount", userId, deviceId, algorithm, kind],
  /** A device's one-time key counters. */
  oneTimeKeyCountPrefix: (userId: string, deviceId: string): Deno.KvKey => [
    "userdevicealg_onetimekeycount",
    userId,
    deviceId,
  ],
  /**
   * (userId, deviceId) -> {seq}: the device's last key upload; every upload that stores keys
   * checks and rewrites it, so one device's uploads serialise across processes.
   */
  keyUploadHead: (userId: string, deviceId: string): Deno.KvKey => [
    "userdeviceid_keyuploadhead",
    userId,
    deviceId,
  ],
  /** (userId, deviceId, algorithm) -> {keyId, key, used}: the device's fallback key. */
  fallbackKey: (userId: string, deviceId: string, algorithm: string): Deno.KvKey => [
    "userdevicealg_fallbackkey",
    userId,
    deviceId,
    algorithm,
  ],
  /** A device's fallback keys, one per algorithm. */
  fallbackKeyPrefix: (userId: string, deviceId: string): Deno.KvKey => [
    "userdevicealg_fallbackkey",
    userId,
    deviceId,
  ],
  /** (userId, usage) -> cross-signing key (master, self_signing, user_signing). */
  crossSigningKey: (userId: string, usage: string): Deno.KvKey => [
    "userusage_crosssigningkey",
    userId,
    usage,
  ],
  /** A user's cross-signing keys. */
  crossSigningKeyPrefix: (userId: string): Deno.KvKey => ["userusage_crosssigningkey", userId],
  /**
   * (targetUserId, targetKeyId, signerUserId, signerKeyId) -> signature: a signature uploaded
   * through /keys/signatures/upload on a device ID or a cross-signing public key.
   */
  signature: (
    targetUserId: string,
    targetKeyId: string,
    signerUserId: string,
    signerKeyId: string,
  ): Deno.KvKey => ["userkeyid_signature", targetUserId, targetKeyId, signerUserId, signerKeyId],
  /** Uploaded signatures on a user's keys, or on one of them. */
  signaturePrefix: (targetUserId: string, targetKeyId?: string): Deno.KvKey =>
    targetKeyId === undefined
      ? ["userkeyid_signature", targetUserId]
      : ["userkeyid_signature", targetUserId, targetKeyId],
  /** userId -> {streamId}: the user's device-list stream position (last update). */
  deviceListHead: (userId: string): Deno.KvKey => ["userid_devicelisthead", userId],
  /** (userId, streamId) -> DeviceListUpdate: one device-list update with its prev_id chain. */
  deviceListUpdate: (userId: string, streamId: number): Deno.KvKey => [
    "userid_devicelistupdate",
    userId,
    streamId,
  ],
  /** A user's device-list updates by stream position. */
  deviceListUpdatePrefix: (userId: string): Deno.KvKey => ["userid_devicelistupdate", userId],
  /**
   * userId -> DeviceListSentMark: how far a local user's device-list log was queued for other
   * servers, and the stream ID of the last m.device_list_update queued (the next one's prev_id).
   */
  deviceListSent: (userId: string): Deno.KvKey => ["userid_devicelistsent", userId],
  /** (versionstamp) -> {userIds}: whose device lists changed, by commit (for sync and /keys/changes). */
  deviceListChangePrefix: (): Deno.KvKey => ["devicelistchange_userids"],
  /**
   * remote userId -> {writeId, chunks, first}: the cached device list of another server's user
   * (kv/remote_device_store.ts), UTF-8 JSON whose first chunk rides here.
   */
  remoteDeviceList: (userId: string): Deno.KvKey => ["userid_remotedevicelist", userId],
  /** (remote userId, writeId, index >= 1) -> bytes: the rest of a large cached device list. */
  remoteDeviceListChunk: (userId: string, writeId: string, index: number): Deno.KvKey => [
    "useridwriteid_remotedevicelistchunk",
    userId,
    writeId,
    index,
  ],
  /** A cached device list's continuation chunks: all of the user's, or one write's. */
  remoteDeviceListChunkPrefix: (userId: string, writeId?: string): Deno.KvKey =>
    writeId === undefined
      ? ["useridwriteid_remotedevicelistchunk", userId]
      : ["useridwriteid_remotedevicelistchunk", userId, writeId],
  /**
   * (signerUserId, versionstamp) -> {userIds}: users whose keys the signer signed with their
   * user-signing key; only the signer is told (their sync lists the targets as changed).
   */
  signatureNoticePrefix: (signerUserId: string): Deno.KvKey => [
    "userid_signaturenotice",
    signerUserId,
  ],
  /** (userId, deviceId, versionstamp) -> ToDeviceMessage: a device's to-device inbox in order. */
  toDeviceInboxPrefix: (userId: string, deviceId: string): Deno.KvKey => [
    "userdeviceid_todevice",
    userId,
    deviceId,
  ],
  /** (userId, deviceId) -> {handouts: [{token, lastStamp}]}: what the latest syncs handed out. */
  toDeviceDelivery: (userId: string, deviceId: string): Deno.KvKey => [
    "userdeviceid_todevicedelivery",
    userId,
    deviceId,
  ],
  /** (senderUserId, senderDeviceId, txnId) -> progress: /sendToDevice transaction IDs. */
  toDeviceTxn: (userId: string, deviceId: string, txnId: string): Deno.KvKey => [
    "userdevicetxnid_todevice",
    userId,
    deviceId,
    txnId,
  ],
  /** The /sendToDevice transaction IDs a device sent under (dropped when the device goes). */
  toDeviceTxnPrefix: (userId: string, deviceId: string): Deno.KvKey => [
    "userdevicetxnid_todevice",
    userId,
    deviceId,
  ],
  /**
   * (origin, message_id) -> progress: another server's m.direct_to_device EDUs delivered here
   * (expires: a retried transaction comes within hours, never weeks).
   */
  toDeviceRemoteMessage: (origin: string, messageId: string): Deno.KvKey => [
    "originmessageid_todevice",
    origin,
    messageId,
  ],
  /**
   * userId -> {deviceId, deviceData}: the user's dehydrated device (MSC3814; one per user) and
   * its `device_data` as UTF-8 JSON bytes. Written in the commit that creates the device record
   * and deleted in the one that deletes it (kv/account_store.ts).
   */
  dehydratedDevice: (userId: string): Deno.KvKey => ["userid_dehydrateddevice", userId],
  /**
   * userId -> {last, current}: the highest backup version ever created (numbers are never
   * reused) and the current one; every create and delete rewrites it, so key uploads that
   * check it cannot land in a version that stopped being current.
   */
  backupHead: (userId: string): Deno.KvKey => ["userid_backuphead", userId],
  /** (userId, version) -> BackupVersionRecord: key backup versions (number-sorted). */
  backupVersion: (userId: string, version: number): Deno.KvKey => [
    "userid_backupversion",
    userId,
    version,
  ],
  /** A user's backup versions. */
  backupVersionPrefix: (userId: string): Deno.KvKey => ["userid_backupversion", userId],
  /** (userId, version, roomId, sessionId) -> KeyBackupData: one backed-up room key. */
  backupKey: (userId: string, version: number, roomId: string, sessionId: string): Deno.KvKey => [
    "userversionroomsession_backupkey",
    userId,
    version,
    roomId,
    sessionId,
  ],
  /** A backup version's keys, or one room's (every version's keys of a user without `version`). */
  backupKeyPrefix: (userId: string, version?: number, roomId?: string): Deno.KvKey =>
    version === undefined
      ? ["userversionroomsession_backupkey", userId]
      : roomId === undefined
      ? ["userversionroomsession_backupkey", userId, version]
      : ["userversionroomsession_backupkey", userId, version, roomId],
};

/** Key builders for moderation: account locks and suspensions, and content reports. */
export const moderationKeys = {
  /** userId -> AccountModerationRecord: whether an administrator locked or suspended the user. */
  accountModeration: (userId: string): Deno.KvKey => ["userid_moderation", userId],
  /** reportId (time-ordered) -> ContentReportRecord: reports kept for administrators. */
  report: (reportId: string): Deno.KvKey => ["reportid_report", reportId],
  /** All reports, in the order they arrived. */
  reportPrefix: (): Deno.KvKey => ["reportid_report"],
};

/** Key builders for memberships of local users in rooms this server is not in. */
export const remoteMembershipKeys = {
  /** (userId, roomId) -> RemoteMembershipRecord: an invite received, a knock sent, their end. */
  membership: (userId: string, roomId: string): Deno.KvKey => [
    "userid_remotemembership",
    userId,
    roomId,
  ],
  /** A user's remote memberships. */
  membershipPrefix: (userId: string): Deno.KvKey => ["userid_remotemembership", userId],
  /**
   * userId -> counter bumped by every write of the user's remote memberships: each commit checks
   * it, so two concurrent invites cannot both pass the open-invite cap on one stale count.
   */
  guard: (userId: string): Deno.KvKey => ["userid_remotemembershipguard", userId],
  /** (userId, roomId, chunk index >= 1) -> bytes: the rest of a record's PDU. */
  chunk: (userId: string, roomId: string, index: number): Deno.KvKey => [
    "userroomid_remotemembershipchunk",
    userId,
    roomId,
    index,
  ],
  /** All continuation chunks of one record. */
  chunkPrefix: (userId: string, roomId: string): Deno.KvKey => [
    "userroomid_remotemembershipchunk",
    userId,
    roomId,
  ],
};

/** Key builders for joins of remote rooms under way (domain/ports/pending_join_store.ts). */
export const pendingJoinKeys = {
  /** (userId, roomId) -> PendingJoinRecord: a join whose commits are not all done yet. */
  join: (userId: string, roomId: string): Deno.KvKey => ["userroomid_pendingjoin", userId, roomId],
  /** Every pending join. */
  all: (): Deno.KvKey => ["userroomid_pendingjoin"],
};

/** Key builders for transactions other servers sent us (domain/ports/inbound_transaction_store.ts). */
export const inboundTransactionKeys = {
  /**
   * (origin, txnId) -> UTF-8 JSON bytes of the `/send` answer: a retried transaction gets the
   * answer it got the first time. Written with an expiry (a day), so they do not pile up.
   */
  answer: (origin: string, txnId: string): Deno.KvKey => ["origintxnid_answer", origin, txnId],
};

/** Key builders for rate limits shared by the fleet (domain/ports/rate_limit_store.ts). */
export const rateLimitKeys = {
  /**
   * (action, key, window length in ms, window number, writer) -> number: the hits one process
   * allowed in that window (blind sets of its total, with an expiry, so they do not pile up).
   */
  counter: (
    action: string,
    key: string,
    windowMs: number,
    window: number,
    writer: string,
  ): Deno.KvKey => ["ratelimit_count", action, key, windowMs, window, writer],
  /** Every writer's counter of one window: `list` bounds (start inclusive, end exclusive). */
  window: (action: string, key: string, windowMs: number, window: number): Deno.KvKey => [
    "ratelimit_count",
    action,
    key,
    windowMs,
    window,
  ],
};

/** Key builders for leased background jobs (domain/ports/job_lease_store.ts). */
export const jobKeys = {
  /** job name -> JobState: the lease (holder, expiry) and when the job is next due. */
  state: (job: string): Deno.KvKey => ["job_state", job],
  /** (job name, run number) -> JobRunRecord: the run log, kept a day. */
  run: (job: string, run: number): Deno.KvKey => ["jobrun_record", job, run],
  /** A job's run log, in run order. */
  runPrefix: (job: string): Deno.KvKey => ["jobrun_record", job],
};

/**
 * Key builders for the OAuth 2.0 authorization server (domain/oauth/): each part of it adds its
 * maps here.
 */
export const oauthKeys = {
  /** Client ID -> OAuthClient: a client registered through RFC 7591 (written once). */
  client: (clientId: string): Deno.KvKey => ["oauthclientid_client", clientId],
  /** SHA-256 of an authorization code -> AuthorizationCodeRecord (expires, single use). */
  code: (hash: string): Deno.KvKey => ["oauthcodehash_grant", hash],
  /** SHA-256 of an exchanged code -> SpentCodeRecord: the session a replay ends (expires). */
  spentCode: (hash: string): Deno.KvKey => ["oauthspentcodehash_session", hash],
  /** SHA-256 of a rotated refresh token -> SpentRefreshRecord (expires after 30 days). */
  spentRefresh: (hash: string): Deno.KvKey => ["oauthspentrefresh_session", hash],
  /** SHA-256 of a device code -> DeviceGrantRecord (RFC 8628; expires). */
  deviceGrant: (hash: string): Deno.KvKey => ["oauthdevicecode_grant", hash],
  /** Normalised user code -> SHA-256 of its device code (expires with the grant). */
  userCode: (userCode: string): Deno.KvKey => ["oauthusercode_devicecode", userCode],
  /** The ID-token signing key (a private JWK), created once for every process. */
  signingKey: (): Deno.KvKey => ["oauth_signingkey"],
  /** SHA-256 of a browser session cookie -> BrowserSessionRecord (the pages; expires). */
  browserSession: (hash: string): Deno.KvKey => ["browsersessionhash_session", hash],
  /**
   * (userId, sessionId) -> SHA-256 of the session's cookie: a user's browser sessions, so a
   * password change can end them all (expires with the session).
   */
  userBrowserSession: (userId: string, sessionId: string): Deno.KvKey => [
    "userid_sessionid_browsersessionhash",
    userId,
    sessionId,
  ],
  /** Every browser session of one user. */
  userBrowserSessionPrefix: (userId: string): Deno.KvKey => [
    "userid_sessionid_browsersessionhash",
    userId,
  ],
  /** Request ID -> PendingAuthorizationRecord: waiting for sign-in and consent (expires). */
  pendingAuthorization: (requestId: string): Deno.KvKey => [
    "oauthrequestid_pendingauthorization",
    requestId,
  ],
  /**
   * userId -> CrossSigningResetApproval: the user approved replacing their cross-signing keys
   * in the account page (`m.oauth` UIA); single use, expires after 10 minutes.
   */
  crossSigningResetApproval: (userId: string): Deno.KvKey => [
    "userid_crosssigningresetapproval",
    userId,
  ],
  /**
   * SHA-256 of an upstream sign-in's `state` -> UpstreamFlowRecord: nonce, PKCE verifier, the
   * local path to go to and the browser binding (single use, expires after 10 minutes).
   */
  upstreamFlow: (stateHash: string): Deno.KvKey => ["upstreamstate_flow", stateHash],
  /** (issuer, subject) -> UpstreamLinkRecord: the local user a provider's subject signs in as. */
  upstreamLink: (issuer: string, subject: string): Deno.KvKey => [
    "upstreamsubject_userid",
    issuer,
    subject,
  ],
  /**
   * (issuer, subject) -> UpstreamProvisioningClaim: the sign-in creating the subject's first
   * account, until it links it or the claim expires (written with `expireIn`, checked on read).
   */
  upstreamProvisioning: (issuer: string, subject: string): Deno.KvKey => [
    "upstreamsubject_provisioningclaim",
    issuer,
    subject,
  ],
};

/**
 * (SHA-256 of a URL in hex, hour bucket) -> CachedUrlPreview: the URL preview fetched in that
 * hour (expires after PREVIEW_CACHE_MS in kv/url_preview_cache.ts).
 */
export function urlPreviewCacheKey(urlKey: string, hour: number): Deno.KvKey {
  return ["urlpreview_cache", urlKey, hour];
}

/** Key builders of the media repository (kv/media_store.ts). */
export const mediaKeys = {
  /** (server, mediaId) -> MediaMeta: visible media (local or cached remote). */
  meta: (server: string, mediaId: string): Deno.KvKey => ["mediaid_meta", server, mediaId],
  /** (uploadId, index) -> bytes: one 60 KiB chunk of a write. */
  chunk: (uploadId: string, index: number): Deno.KvKey => ["mediaid_chunk", uploadId, index],
  /** Every chunk of one write, in order. */
  chunkPrefix: (uploadId: string): Deno.KvKey => ["mediaid_chunk", uploadId],
  /** uploadId -> {expiresAt}: a write under way; left behind by one that never finished. */
  pendingUpload: (uploadId: string): Deno.KvKey => ["mediaupload_pending", uploadId],
  /** Every write under way (the abandoned-write cleanup walks them). */
  pendingUploadPrefix: (): Deno.KvKey => ["mediaupload_pending"],
  /** (server, mediaId, width, height, method, animated) -> MediaMeta: a stored thumbnail. */
  thumbnail: (
    server: string,
    mediaId: string,
    width: number,
    height: number,
    method: string,
    animated: boolean,
  ): Deno.KvKey => ["mediaid_thumbnail", server, mediaId, width, height, method, animated],
  /** Every thumbnail of one media item. */
  thumbnailPrefix: (server: string, mediaId: string): Deno.KvKey => [
    "mediaid_thumbnail",
    server,
    mediaId,
  ],
  /** (userId, createdAt, server, mediaId) -> size: a user's uploads (retention, deletion). */
  userMedia: (userId: string, createdAt: number, server: string, mediaId: string): Deno.KvKey => [
    "userid_mediaid",
    userId,
    createdAt,
    server,
    mediaId,
  ],
  /** (createdAt, server, mediaId) -> size: media by age (retention, cache expiry). */
  mediaByTime: (createdAt: number, server: string, mediaId: string): Deno.KvKey => [
    "mediatime_mediaid",
    createdAt,
    server,
    mediaId,
  ],
  /** userId -> bytes charged to the user's quota. */
  usage: (userId: string): Deno.KvKey => ["userid_mediausage", userId],
  /** (server, mediaId) -> MediaReservation: an ID from `/media/v1/create` awaiting its bytes. */
  reservation: (server: string, mediaId: string): Deno.KvKey => [
    "mediaid_reservation",
    server,
    mediaId,
  ],
  /** (userId, server, mediaId) -> expiresAt: a user's reservations, to cap how many wait. */
  userReservation: (userId: string, server: string, mediaId: string): Deno.KvKey => [
    "userid_mediareservation",
    userId,
    server,
    mediaId,
  ],
  /** Every reservation of one user. */
  userReservationPrefix: (userId: string): Deno.KvKey => ["userid_mediareservation", userId],
  /** userId -> a counter rewritten by each reservation, so two creates cannot both pass the cap. */
  userReservationHead: (userId: string): Deno.KvKey => ["userid_mediareservationhead", userId],
  /** () -> number: when unauthenticated legacy media reads were frozen (set once, first start). */
  legacyFreeze: (): Deno.KvKey => ["media_legacyfreeze"],
};
