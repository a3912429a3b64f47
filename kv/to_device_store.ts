/**
 * Deno KV implementation of the ToDeviceStore port.
 *
 * Inbox: `[...toDeviceInboxPrefix(user, device), commitVersionstamp]` -> UTF-8 JSON of the
 * event. A request writes at most one message per device, so a commit never writes one key
 * twice and no sequence suffix is needed; commit order is inbox order.
 *
 * Transaction record (`toDeviceTxn`): `{done}` or `{done: false, remote, after}`, written and
 * checked in every commit of a request, so a retry after a crash (or a concurrent retry) resumes
 * after the last recipient that has its message and never writes one twice. A request's EDUs for
 * other servers (outbox writes) are written first, under the same record (`remote` counts those
 * queued), so they are queued exactly once and before the request counts as done.
 *
 * Remote message record (`toDeviceRemoteMessage`): the same progress for another server's
 * `m.direct_to_device` EDU, per (origin, message_id), set with an expiry (KV drops it later).
 *
 * Delivery record (`toDeviceDelivery`): `{token, lastStamp}` of the device's latest hand-outs
 * (a few, newest last). Sync tokens are one clock for every stream, so "delete everything up to
 * since" would drop messages the per-response cap held back; instead only a sync whose `since`
 * IS one of those tokens acknowledges, and only up to its `lastStamp`. More than one is kept
 * because a device can have two sync loops (or a retry) in flight: if only the newest were kept,
 * the other loop's next sync would acknowledge nothing and get the same messages again. A stale
 * entry is harmless: the messages it names are gone and later ones sort after it.
 */
import type {
  ToDeviceDelivery,
  ToDeviceEvent,
  ToDeviceInboxPage,
  ToDeviceRemoteWrites,
  ToDeviceStore,
  ToDeviceSyncRequest,
  ToDeviceTransaction,
  ToDeviceTransactionProgress,
} from "../domain/ports/to_device_store.ts";
import { compareRecipients } from "../domain/ports/to_device_store.ts";
import {
  applyMutations,
  estimateKeyBytes,
  KV_LIMITS,
  measureCommit,
  type PlannedMutation,
} from "./commit_budget.ts";
import { e2eeKeys, wakeKeys } from "./schema.ts";
import { parseSyncToken } from "./stream_tokens.ts";
import { addWakes } from "./wake_keys.ts";

/** Stored transaction progress. */
interface TxnRecord {
  done: boolean;
  /** How many of the transaction's EDUs for other servers are queued, while not done. */
  remote?: number;
  /** [userId, deviceId] of the last local recipient written, while not done. */
  after?: [string, string];
}

/** Stored delivery record: the token a handing-out went out with, and its last inbox stamp. */
interface Handout {
  token: string;
  lastStamp: string;
}

/** Stored delivery record: the latest hand-outs, newest last (one bare hand-out before). */
type DeliveryRecord = { handouts: Handout[] } | Handout;

/**
 * How long another server's to-device EDU is remembered as delivered: its sender retries an
 * unanswered transaction within hours (backoff is capped at about a day), never weeks.
 */
const REMOTE_RECORD_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000;
/** Hand-outs remembered per device: enough for a retry beside a running sync loop. */
const MAX_HANDOUTS = 4;

function handoutsOf(record: DeliveryRecord | null): Handout[] {
  if (record === null) return [];
  return "handouts" in record ? record.handouts : [record];
}

/** Mutations of one commit besides the deliveries (the transaction record's set). */
const RESERVED_MUTATIONS = 2;
/** Bytes kept back for the transaction record and estimate error. */
const RESERVED_BYTES = 4096;
/** Stand-in for the commit versionstamp when estimating a key's size (20 hex digits). */
const STAMP_PLACEHOLDER = "00000000000000000000";
/** Optimistic retries of one sync's hand-out before giving up (only same-device syncs race). */
const MAX_SYNC_ATTEMPTS = 16;
/** Keys listed (and at most deleted) per commit when clearing a removed device's keys. */
const DELETE_PAGE = 500;

/** To-device inboxes, deliveries and transaction IDs in KV. */
export class KvToDeviceStore implements ToDeviceStore {
  /** Store over `kv`. */
  constructor(private readonly kv: Deno.Kv) {}

  /** See ToDeviceStore.transactionProgress. */
  async transactionProgress(txn: ToDeviceTransaction): Promise<ToDeviceTransactionProgress | null> {
    const entry = await this.kv.get<TxnRecord>(txnKey(txn));
    return entry.value === null ? null : progressOf(entry.value);
  }

  /** See ToDeviceStore.deliver. */
  async deliver(
    txn: ToDeviceTransaction,
    deliveries: readonly ToDeviceDelivery[],
    committed: (versionstamp: string, userIds: string[]) => void,
    remote: readonly ToDeviceRemoteWrites[] = [],
  ): Promise<void> {
    const key = txnKey(txn);
    const options = "origin" in txn ? { expireIn: REMOTE_RECORD_LIFETIME_MS } : undefined;
    let entry = await this.kv.get<TxnRecord>(key);
    // Deliveries before `next` are known written (by this call or the record it read).
    let next = 0;
    for (;;) {
      if (entry.value?.done) return;
      // Remote EDUs go first: the first `remote` of them are queued (none before any commit).
      const remoteNext = Math.min(entry.value?.remote ?? 0, remote.length);
      const after = entry.value?.after;
      if (after) {
        const cursor = { userId: after[0], deviceId: after[1] };
        while (next < deliveries.length && compareRecipients(deliveries[next], cursor) <= 0) next++;
      }
      const { remoteEnd, end } = chunkEnd(remote, remoteNext, deliveries, next);
      const last = end > next ? deliveries[end - 1] : undefined;
      const record: TxnRecord = remoteEnd === remote.length && end === deliveries.length
        ? { done: true }
        : {
          done: false,
          remote: remoteEnd,
          ...(last ? { after: [last.userId, last.deviceId] } : after ? { after } : {}),
        };
      const op = this.kv.atomic().check(entry);
      for (let i = remoteNext; i < remoteEnd; i++) {
        applyMutations(op, remote[i] as PlannedMutation[]);
      }
      const userIds = new Set<string>();
      for (let i = next; i < end; i++) {
        const d = deliveries[i];
        op.set([
          ...e2eeKeys.toDeviceInboxPrefix(d.userId, d.deviceId),
          this.kv.commitVersionstamp(),
        ], ownBytes(d.event));
        userIds.add(d.userId);
      }
      // Each recipient's syncs, in whatever process, wake with the commit holding its message.
      addWakes(op, { userIds });
      op.set(key, record, options);
      const result = await op.commit();
      if (!result.ok) {
        // A concurrent attempt with the same transaction ID moved it on: resume after it.
        entry = await this.kv.get<TxnRecord>(key);
        continue;
      }
      if (userIds.size > 0) committed(result.versionstamp, [...userIds]);
      if (record.done) return;
      entry = { key, value: record, versionstamp: result.versionstamp };
      next = end;
    }
  }

  /** See ToDeviceStore.takeForSync. */
  async takeForSync(request: ToDeviceSyncRequest): Promise<ToDeviceEvent[]> {
    const prefix = e2eeKeys.toDeviceInboxPrefix(request.userId, request.deviceId);
    // Most syncs find the inbox empty: one short read, no record, no write.
    const probe = await this.kv.list({ prefix }, { limit: 1 }).next();
    if (probe.done) return [];
    const upToStamp = parseSyncToken(request.upTo);
    const recordKey = e2eeKeys.toDeviceDelivery(request.userId, request.deviceId);
    for (let attempt = 0; attempt < MAX_SYNC_ATTEMPTS; attempt++) {
      // The record is read before the inbox, and checked on commit: an acknowledgement by a
      // concurrent sync of this device (which rewrites the record) sends this one round again
      // instead of handing out what it deleted.
      const record = await this.kv.get<DeliveryRecord>(recordKey);
      const handouts = handoutsOf(record.value);
      const ackUpTo = request.since === undefined
        ? undefined
        : handouts.find((h) => h.token === request.since)?.lastStamp;
      const acknowledged: Deno.KvKey[] = [];
      const taken: { stamp: string; value: Uint8Array }[] = [];
      const batchSize = Math.min(1000, request.limit + 1);
      for await (const entry of this.kv.list<Uint8Array>({ prefix }, { batchSize })) {
        const stamp = entry.key[entry.key.length - 1] as string;
        if (ackUpTo !== undefined && stamp <= ackUpTo) {
          acknowledged.push(entry.key);
          continue;
        }
        if (stamp > upToStamp || taken.length >= request.limit) break;
        taken.push({ stamp, value: entry.value });
      }
      if (ackUpTo === undefined && taken.length === 0) return [];
      // A response hands out at most `limit` messages, so an acknowledgement deletes about as
      // many; more only if the limit shrank between versions. Those go first, unchecked:
      // the client has acknowledged them whatever else happens.
      const batches = deletionBatches(acknowledged, KV_LIMITS.mutations - RESERVED_MUTATIONS);
      const last = batches.pop() ?? [];
      for (const batch of batches) await deleteKeys(this.kv, batch);
      const op = this.kv.atomic().check(record);
      for (const key of last) op.delete(key);
      // Hand-outs the acknowledgement covered name nothing left; the others stay acknowledgeable.
      const kept = handouts.filter((h) => ackUpTo === undefined || h.lastStamp > ackUpTo);
      if (taken.length > 0) {
        kept.push({ token: request.upTo, lastStamp: taken.at(-1)!.stamp });
      }
      if (kept.length > 0) {
        const value: DeliveryRecord = { handouts: kept.slice(-MAX_HANDOUTS) };
        op.set(recordKey, value);
      } else {
        op.delete(recordKey);
      }
      if ((await op.commit()).ok) return taken.map((t) => decodeEvent(t.value));
    }
    throw new Error(
      `to-device: too much contention syncing ${request.userId} ${request.deviceId}`,
    );
  }

  /**
   * See ToDeviceStore.readInbox. One list call (a single batch, so one consistent read): a
   * message committed later has a higher versionstamp than anything this read saw, so it sorts
   * after the page and the next page finds it.
   */
  async readInbox(
    userId: string,
    deviceId: string,
    after: string | null,
    limit: number,
  ): Promise<ToDeviceInboxPage> {
    const prefix = e2eeKeys.toDeviceInboxPrefix(userId, deviceId);
    // From `after` itself (start is inclusive), one more to skip it and one more to see if
    // the page is the last.
    const selector = after === null ? { prefix } : { prefix, start: [...prefix, after] };
    const want = limit + 2;
    const page: ToDeviceInboxPage = { events: [], last: null, more: false };
    for await (
      const entry of this.kv.list<Uint8Array>(selector, { limit: want, batchSize: want })
    ) {
      const stamp = entry.key[entry.key.length - 1] as string;
      if (after !== null && stamp <= after) continue;
      if (page.events.length === limit) {
        page.more = true;
        break;
      }
      page.events.push(decodeEvent(entry.value));
      page.last = stamp;
    }
    return page;
  }

  /** See ToDeviceStore.removeDevice. */
  async removeDevice(userId: string, deviceId: string): Promise<void> {
    await deletePrefix(this.kv, e2eeKeys.toDeviceInboxPrefix(userId, deviceId));
    await deletePrefix(this.kv, e2eeKeys.toDeviceTxnPrefix(userId, deviceId));
    await this.kv.delete(e2eeKeys.toDeviceDelivery(userId, deviceId));
  }
}

function txnKey(txn: ToDeviceTransaction): Deno.KvKey {
  return "origin" in txn
    ? e2eeKeys.toDeviceRemoteMessage(txn.origin, txn.messageId)
    : e2eeKeys.toDeviceTxn(txn.sender, txn.senderDeviceId, txn.txnId);
}

function progressOf(record: TxnRecord): ToDeviceTransactionProgress {
  if (record.done || (!record.after && record.remote === undefined)) return { done: true };
  return {
    done: false,
    remote: record.remote ?? 0,
    ...(record.after ? { after: { userId: record.after[0], deviceId: record.after[1] } } : {}),
  };
}

/**
 * Where the commit starting at remote EDU `remoteStart` and delivery `start` must end to stay
 * within KV's limits on mutations, mutation bytes and key bytes: the remote EDUs first (each
 * whole), then deliveries; at least one EDU or delivery when any is left.
 */
function chunkEnd(
  remote: readonly ToDeviceRemoteWrites[],
  remoteStart: number,
  deliveries: readonly ToDeviceDelivery[],
  start: number,
): { remoteEnd: number; end: number } {
  let mutations = RESERVED_MUTATIONS;
  let bytes = RESERVED_BYTES;
  let keyBytes = RESERVED_BYTES;
  let remoteEnd = remoteStart;
  while (remoteEnd < remote.length) {
    const size = measureCommit(remote[remoteEnd] as PlannedMutation[]);
    const fits = mutations + size.mutations <= KV_LIMITS.mutations &&
      bytes + size.mutationBytes <= KV_LIMITS.mutationBytes &&
      keyBytes + size.keyBytes <= KV_LIMITS.keyBytes;
    if (!fits && remoteEnd > remoteStart) return { remoteEnd, end: start };
    mutations += size.mutations;
    bytes += size.mutationBytes;
    keyBytes += size.keyBytes;
    remoteEnd++;
  }
  let end = start;
  // The first delivery to each user also bumps that user's wake key in the commit.
  const woken = new Set<string>();
  while (end < deliveries.length) {
    const d = deliveries[end];
    const wakeKey = woken.has(d.userId) ? 0 : estimateKeyBytes(wakeKeys.user(d.userId));
    const key = estimateKeyBytes([
      ...e2eeKeys.toDeviceInboxPrefix(d.userId, d.deviceId),
      STAMP_PLACEHOLDER,
    ]) + wakeKey;
    const writes = wakeKey > 0 ? 2 : 1;
    const size = key + d.event.byteLength + 24 + (wakeKey > 0 ? 12 : 0);
    const fits = mutations + writes <= KV_LIMITS.mutations &&
      bytes + size <= KV_LIMITS.mutationBytes && keyBytes + key <= KV_LIMITS.keyBytes;
    if (!fits && (end > start || remoteEnd > remoteStart)) break;
    mutations += writes;
    bytes += size;
    keyBytes += key;
    woken.add(d.userId);
    end++;
  }
  return { remoteEnd, end };
}

/** The bytes as their own buffer (a view would be stored with the buffer behind it). */
function ownBytes(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? bytes
    : bytes.slice();
}

function decodeEvent(bytes: Uint8Array): ToDeviceEvent {
  return JSON.parse(new TextDecoder().decode(bytes)) as ToDeviceEvent;
}

async function deleteKeys(kv: Deno.Kv, keys: readonly Deno.KvKey[]): Promise<void> {
  const op = kv.atomic();
  for (const key of keys) op.delete(key);
  const result = await op.commit();
  if (!result.ok) throw new Error("to-device: a deletion commit was refused");
}

/**
 * Split deletions into batches one commit takes: at most `maxCount` keys and, since long user
 * and device IDs make long keys, at most KV's key bytes (less a margin).
 */
function deletionBatches(keys: readonly Deno.KvKey[], maxCount: number): Deno.KvKey[][] {
  const batches: Deno.KvKey[][] = [];
  let batch: Deno.KvKey[] = [];
  let bytes = RESERVED_BYTES;
  for (const key of keys) {
    const size = estimateKeyBytes(key);
    if (batch.length > 0 && (batch.length >= maxCount || bytes + size > KV_LIMITS.keyBytes)) {
      batches.push(batch);
      batch = [];
      bytes = RESERVED_BYTES;
    }
    batch.push(key);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/** Delete every key under `prefix`, a page at a time; safe to repeat after a crash. */
async function deletePrefix(kv: Deno.Kv, prefix: Deno.KvKey): Promise<void> {
  for (;;) {
    const keys: Deno.KvKey[] = [];
    for await (const entry of kv.list({ prefix }, { limit: DELETE_PAGE })) keys.push(entry.key);
    for (const batch of deletionBatches(keys, DELETE_PAGE)) await deleteKeys(kv, batch);
    if (keys.length < DELETE_PAGE) return;
  }
}
