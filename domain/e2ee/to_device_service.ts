/**
 * Send-to-device messaging: `/sendToDevice` resolves each recipient user's devices (`*` for all
 * of them), writes one message per device into its inbox under the sender's transaction ID,
 * and wakes the recipients' long-polls. Sync hands the messages out (to_device_stream.ts).
 *
 * Recipients on other servers become `m.direct_to_device` EDUs, one per destination server (or
 * several, to fit an outbox entry), queued on the federation outbox in the same commits as the
 * local inboxes under the same transaction record: a retried request never queues them twice,
 * and a request that answered has queued them. Messages other servers send are delivered here
 * once per (origin, message_id) (`receiveRemote`), the same way.
 */
import { mapLimited } from "../concurrency.ts";
import { invalidParam, tooLarge } from "../errors.ts";
import { parseDeviceId, parseUserId } from "../protocol/identifiers.ts";
import type { JsonObject } from "../protocol/json.ts";
import type { CommitMutation } from "../ports/event_store.ts";
import {
  compareRecipients,
  type ToDeviceDelivery,
  type ToDeviceRemoteWrites,
  type ToDeviceStore,
  type ToDeviceTransaction,
} from "../ports/to_device_store.ts";
import type { Edu } from "../federation/federation_transactions.ts";
import {
  directToDeviceEdus,
  fitsOneEdu,
  MAX_DIRECT_TO_DEVICE_EDU_BYTES,
  type RemoteToDeviceEntry,
  type RemoteToDeviceMessages,
} from "../federation/edus/to_device_edu.ts";

/** Largest stored message: the UTF-8 JSON of `{type, sender, content}` (a KV value is 64 KiB). */
export const MAX_TO_DEVICE_EVENT_BYTES = 65_000;
/** The device ID that means every device of the user. */
export const ALL_DEVICES = "*";
/**
 * Device look-ups in flight at once: a 4 MiB body can name over 100,000 users, which must not
 * become as many concurrent storage reads.
 */
const DEVICE_LOOKUPS_IN_FLIGHT = 32;

/** The body of one `/sendToDevice` request, after the edge checked its JSON shape. */
export interface SendToDeviceRequest {
  sender: string;
  senderDeviceId: string;
  txnId: string;
  eventType: string;
  /** userId -> (deviceId or `*`) -> content. */
  messages: Record<string, Record<string, JsonObject>>;
}

/** What the service reads and calls. */
export interface ToDeviceServiceDeps {
  store: ToDeviceStore;
  /** The devices of a local user (none for an unknown user). */
  devices: { listDevices(userId: string): Promise<readonly { deviceId: string }[]> };
  serverName: string;
  /** Wake the user's long-polling syncs after commit `versionstamp` (raw) completed. */
  notifyUser(userId: string, versionstamp: string): void;
  /**
   * The federation outbox (the FederationSender): EDUs for other servers as writes for the
   * request's own commits, and the wake-up once they landed. Absent: remote recipients are
   * skipped (as with federation off, where `eduMutations` gives nothing).
   */
  federation?: {
    eduMutations(entries: readonly { destination: string; edu: Edu }[]): CommitMutation[];
    wake(): void;
  };
}

/** A request's messages after checking: local ones encoded, remote ones by destination. */
interface CheckedMessages {
  local: Map<string, Map<string, Uint8Array>>;
  remote: Map<string, RemoteToDeviceEntry[]>;
}

/** Send-to-device use cases. */
export class ToDeviceService {
  /** Over its dependencies. */
  constructor(private readonly deps: ToDeviceServiceDeps) {}

  /**
   * Deliver a `/sendToDevice` request once per (sender, device, txnId): a repeat finishes what
   * an interrupted attempt left and never delivers a message twice. Bad input is refused
   * before anything is written.
   */
  async send(request: SendToDeviceRequest): Promise<void> {
    const { local, remote } = this.#checkMessages(request);
    const txn = {
      sender: request.sender,
      senderDeviceId: request.senderDeviceId,
      txnId: request.txnId,
    };
    if ((await this.deps.store.transactionProgress(txn))?.done) return;
    const deliveries = await this.#resolve(local);
    // Built afresh on every attempt (the outbox order is the queueing time); the transaction
    // record decides which of them are written, so each lands once.
    const writes: ToDeviceRemoteWrites[] = [];
    const { federation } = this.deps;
    if (federation) {
      for (const [destination, entries] of remote) {
        for (const edu of directToDeviceEdus(request, destination, entries)) {
          writes.push(federation.eduMutations([{ destination, edu }]));
        }
      }
    }
    try {
      await this.#deliver(txn, deliveries, writes);
    } finally {
      if (writes.some((w) => w.length > 0)) federation?.wake();
    }
    await this.#dropOrphans(deliveries);
  }

  /**
   * Deliver another server's checked `m.direct_to_device` messages (DirectToDeviceEduHandler)
   * to the local devices they name, once per (origin, message_id): a retried transaction, or
   * the same EDU again, delivers nothing twice.
   */
  async receiveRemote(message: RemoteToDeviceMessages): Promise<void> {
    const txn = { origin: message.origin, messageId: message.messageId };
    if ((await this.deps.store.transactionProgress(txn))?.done) return;
    const encoder = new TextEncoder();
    const local = new Map<string, Map<string, Uint8Array>>();
    for (const [userId, byDevice] of message.messages) {
      const encoded = new Map<string, Uint8Array>();
      for (const [deviceId, content] of byDevice) {
        const event = { type: message.eventType, sender: message.sender, content };
        encoded.set(deviceId, encoder.encode(JSON.stringify(event)));
      }
      local.set(userId, encoded);
    }
    const deliveries = await this.#resolve(local);
    await this.#deliver(txn, deliveries, []);
    await this.#dropOrphans(deliveries);
  }

  #deliver(
    txn: ToDeviceTransaction,
    deliveries: readonly ToDeviceDelivery[],
    remote: readonly ToDeviceRemoteWrites[],
  ): Promise<void> {
    return this.deps.store.deliver(txn, deliveries, (versionstamp, userIds) => {
      for (const userId of userIds) this.deps.notifyUser(userId, versionstamp);
    }, remote);
  }

  /** The `devicesRemovedHooks` entry: drop removed devices' inboxes and records. */
  async devicesRemoved(userId: string, deviceIds: readonly string[]): Promise<void> {
    for (const deviceId of deviceIds) await this.deps.store.removeDevice(userId, deviceId);
  }

  /**
   * Check every user ID, device ID and message size, encode each local message once, and
   * return the local users' messages and the remote ones by server (in request order).
   */
  #checkMessages(request: SendToDeviceRequest): CheckedMessages {
    const encoder = new TextEncoder();
    const local = new Map<string, Map<string, Uint8Array>>();
    const remote = new Map<string, RemoteToDeviceEntry[]>();
    for (const [userId, byDevice] of Object.entries(request.messages)) {
      const user = parseUserId(userId);
      if (!user.ok) throw invalidParam(user.reason);
      const server = user.value.serverName;
      const isLocal = server === this.deps.serverName;
      const encoded = new Map<string, Uint8Array>();
      for (const [deviceId, content] of Object.entries(byDevice)) {
        if (deviceId !== ALL_DEVICES) {
          const device = parseDeviceId(deviceId);
          if (!device.ok) throw invalidParam(device.reason);
        }
        const event = { type: request.eventType, sender: request.sender, content };
        const bytes = encoder.encode(JSON.stringify(event));
        if (bytes.byteLength > MAX_TO_DEVICE_EVENT_BYTES) {
          throw tooLarge(
            `To-device message for ${userId} ${deviceId} is over ${MAX_TO_DEVICE_EVENT_BYTES} bytes`,
          );
        }
        if (isLocal) {
          encoded.set(deviceId, bytes);
          continue;
        }
        const entry = { userId, deviceId, content };
        if (!fitsOneEdu(request, entry)) {
          throw tooLarge(
            `To-device message for ${userId} ${deviceId} is too large to send to its server ` +
              `(about ${MAX_DIRECT_TO_DEVICE_EDU_BYTES} bytes)`,
          );
        }
        let list = remote.get(server);
        if (!list) remote.set(server, list = []);
        list.push(entry);
      }
      if (isLocal && encoded.size > 0) local.set(userId, encoded);
    }
    return { local, remote };
  }

  /**
   * One delivery per existing device: `*` reaches every device of the user, a message for a
   * named device replaces it there; unknown devices are skipped (as Synapse does). Sorted in
   * the store's recipient order.
   */
  async #resolve(local: Map<string, Map<string, Uint8Array>>): Promise<ToDeviceDelivery[]> {
    const users = [...local.keys()];
    const devices = await mapLimited(
      users,
      DEVICE_LOOKUPS_IN_FLIGHT,
      (userId) => this.deps.devices.listDevices(userId),
    );
    const deliveries: ToDeviceDelivery[] = [];
    users.forEach((userId, i) => {
      const byDevice = local.get(userId)!;
      const all = byDevice.get(ALL_DEVICES);
      for (const { deviceId } of devices[i]) {
        const event = byDevice.get(deviceId) ?? all;
        if (event) deliveries.push({ userId, deviceId, event });
      }
    });
    return deliveries.sort(compareRecipients);
  }

  /**
   * A device deleted while this request was resolving may have got its message after its
   * removal hook emptied the inbox. Looking again after the commit closes that race: either
   * this read sees the device gone, or the hook starts after it and finds the message.
   */
  async #dropOrphans(deliveries: readonly ToDeviceDelivery[]): Promise<void> {
    const byUser = new Map<string, Set<string>>();
    for (const d of deliveries) {
      let set = byUser.get(d.userId);
      if (!set) byUser.set(d.userId, set = new Set());
      set.add(d.deviceId);
    }
    await mapLimited([...byUser], DEVICE_LOOKUPS_IN_FLIGHT, async ([userId, sent]) => {
      const now = new Set((await this.deps.devices.listDevices(userId)).map((d) => d.deviceId));
      for (const deviceId of sent) {
        if (!now.has(deviceId)) await this.deps.store.removeDevice(userId, deviceId);
      }
    });
  }
}
