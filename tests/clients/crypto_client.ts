/**
 * matrix-js-sdk clients with its Rust crypto (`@matrix-org/matrix-sdk-crypto-wasm`) for the
 * end-to-end encryption tests against the real server process: log a device in, start its sync
 * loop, create and join encrypted rooms, send text, and wait until an event is decrypted.
 *
 * The wasm loads as-is under Deno's npm support: the package's `node` export reads the `.wasm`
 * file with `node:fs`, which Deno provides, so no loader shim is needed. Crypto state lives in
 * memory (`useIndexedDB: false`): each session is one device for one test.
 *
 * Used by js_sdk_crypto_test.ts and by the nio <-> js-sdk test; keep the exported API stable.
 */
import * as sdk from "matrix-js-sdk";
import type { CryptoApi } from "matrix-js-sdk/lib/crypto-api/index.js";
import { type Logger, logger as sdkGlobalLogger } from "matrix-js-sdk/lib/logger.js";
import { recordingFetch, startSyncing, step, waitUntil } from "./matrix_helpers.ts";

/**
 * A js-sdk logger that drops trace/debug/info (the Rust crypto traces every request at debug)
 * and keeps warnings and errors prefixed with `label`: appended to `sink` when given (the last
 * 2,000 lines, for a failure report; the SDK warns about harmless things such as missing push
 * rules on every start), else printed to the console.
 */
export function quietLogger(label = "js-sdk", sink?: string[]): Logger {
  const keep = (level: string, msg: unknown[]) => {
    if (!sink) {
      (level === "warn" ? console.warn : console.error)(`[${label}]`, ...msg);
      return;
    }
    sink.push(`${level} [${label}] ${msg.map(describeLogArgument).join(" ")}`);
    if (sink.length > 2_000) sink.splice(0, sink.length - 2_000);
  };
  const logger: Logger = {
    trace: () => {},
    debug: () => {},
    info: () => {},
    warn: (...msg: unknown[]) => keep("warn", msg),
    error: (...msg: unknown[]) => keep("error", msg),
    getChild: () => logger,
  };
  return logger;
}

/** Warnings and errors of the SDK's global logger (the last 2,000 lines), for failure reports. */
const globalSdkLog: string[] = [];
let globalSdkLoggerQuieted = false;

/**
 * Route the SDK's module-level logger (used by rooms, events and MatrixRTC rather than the
 * client's logger: every send and every retried decryption logs a line) into a buffer that
 * {@link cryptoFailureReport} prints, dropping its debug/info/log lines. Idempotent; affects
 * loggers the SDK derives from it afterwards, which is all but a few created at import time.
 */
export function quietGlobalSdkLogger(): void {
  if (globalSdkLoggerQuieted) return;
  globalSdkLoggerQuieted = true;
  // The SDK's global logger is a loglevel logger; its children copy its method factory.
  const root = sdkGlobalLogger as unknown as {
    methodFactory: (method: string, level: number, name: string | symbol) => unknown;
    rebuild(): void;
  };
  root.methodFactory = (method: string) => {
    if (method !== "warn" && method !== "error") return () => {};
    return (...msg: unknown[]) => {
      globalSdkLog.push(`${method} [js-sdk global] ${msg.map(describeLogArgument).join(" ")}`);
      if (globalSdkLog.length > 2_000) globalSdkLog.splice(0, globalSdkLog.length - 2_000);
    };
  };
  root.rebuild();
}

function describeLogArgument(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** One logged-in device of a user: a js-sdk client with Rust crypto initialised. */
export interface CryptoSession {
  /** The js-sdk client; its sync loop runs after {@link startCryptoClient}. */
  readonly client: sdk.MatrixClient;
  /** The client's Rust crypto (`client.getCrypto()`), never undefined here. */
  readonly crypto: CryptoApi;
  readonly userId: string;
  readonly deviceId: string;
  /** The account password, for user-interactive auth (e.g. cross-signing upload). */
  readonly password: string;
  /** Every request of this client answered with an HTTP error: `METHOD /path -> status errcode`. */
  readonly failures: string[];
  /** The client's warnings and errors (see {@link quietLogger}), for a failure report. */
  readonly logs: string[];
  /**
   * Secret-storage keys this device knows, by key ID. The SDK's `getSecretStorageKey` callback
   * answers from this map, so a test can hand a recovery key to a fresh device by adding it here.
   */
  readonly secretStorageKeys: Map<string, Uint8Array<ArrayBuffer>>;
  /** Stop the sync loop and the crypto machine. Safe to call twice. */
  stop(): void;
}

/** How to log a device in: {@link loginCryptoClient} and {@link openCryptoClient}. */
export interface CryptoClientOptions {
  /** The server's client API base URL, e.g. `http://127.0.0.1:8123`. */
  baseUrl: string;
  /** The localpart or full user ID of an existing account. */
  user: string;
  password: string;
  /** `initial_device_display_name` for the new device. */
  deviceDisplayName?: string;
  /**
   * Where to record failed requests; defaults to a fresh array. Pass one shared array to get a
   * single report for several clients.
   */
  failures?: string[];
  /**
   * Where to keep the client's warnings and errors; defaults to a fresh array. Pass `"console"`
   * to print them as they come instead.
   */
  logs?: string[] | "console";
  /**
   * The `fetch` the clients make their requests with; the global one by default. Servers
   * serving TLS with a test CA's certificate need one that trusts it (`Deno.createHttpClient`).
   */
  fetch?: typeof fetch;
}

/**
 * Log in with a password as a NEW device and initialise Rust crypto for it (in memory). The
 * client is not syncing yet: call {@link startCryptoClient}, or use {@link openCryptoClient}.
 */
export async function loginCryptoClient(options: CryptoClientOptions): Promise<CryptoSession> {
  quietGlobalSdkLogger();
  const failures = options.failures ?? [];
  const anonymous = sdk.createClient({
    baseUrl: options.baseUrl,
    fetchFn: recordingFetch(failures, options.fetch),
    logger: quietLogger("js-sdk login", []),
  });
  const login = await step(`log in ${options.user}`, () =>
    anonymous.loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: options.user },
      password: options.password,
      initial_device_display_name: options.deviceDisplayName ?? "js-sdk crypto test",
    }));
  anonymous.stopClient();

  const logs = options.logs === "console" ? undefined : options.logs ?? [];
  const secretStorageKeys = new Map<string, Uint8Array<ArrayBuffer>>();
  const client = sdk.createClient({
    baseUrl: options.baseUrl,
    userId: login.user_id,
    deviceId: login.device_id,
    accessToken: login.access_token,
    store: new sdk.MemoryStore(),
    fetchFn: recordingFetch(failures, options.fetch),
    logger: quietLogger(`js-sdk ${login.user_id} ${login.device_id}`, logs),
    cryptoCallbacks: {
      // The SDK asks for one of `keys`; answer with the first we hold, or decline.
      getSecretStorageKey: ({ keys }) => {
        for (const keyId of Object.keys(keys)) {
          const key = secretStorageKeys.get(keyId);
          if (key) return Promise.resolve([keyId, key] as [string, Uint8Array<ArrayBuffer>]);
        }
        return Promise.resolve(null);
      },
      // A key this device creates (bootstrapSecretStorage) is remembered like a given one.
      cacheSecretStorageKey: (keyId, _keyInfo, key) => {
        secretStorageKeys.set(keyId, key);
      },
    },
  });
  await step(
    `initRustCrypto for ${login.user_id}`,
    () => client.initRustCrypto({ useIndexedDB: false }),
  );
  const crypto = client.getCrypto();
  if (!crypto) throw new Error("initRustCrypto left the client without a CryptoApi");

  let stopped = false;
  return {
    client,
    crypto,
    userId: login.user_id,
    deviceId: login.device_id,
    password: options.password,
    failures,
    logs: logs ?? [],
    secretStorageKeys,
    stop: () => {
      if (stopped) return;
      stopped = true;
      client.stopClient();
    },
  };
}

/**
 * Start the session's sync loop and resolve once the first sync has been processed (device
 * keys are uploaded by the crypto machine around then, not necessarily before this resolves).
 */
export async function startCryptoClient(session: CryptoSession): Promise<void> {
  await step(
    `first sync of ${session.userId} ${session.deviceId}`,
    () => startSyncing(session.client, session.userId, 50),
  );
}

/** {@link loginCryptoClient} then {@link startCryptoClient}: a new device, syncing. */
export async function openCryptoClient(options: CryptoClientOptions): Promise<CryptoSession> {
  const session = await loginCryptoClient(options);
  try {
    await startCryptoClient(session);
  } catch (error) {
    session.stop();
    throw error;
  }
  return session;
}

/**
 * {@link openCryptoClient}, the session added to `sessions` at once (so that whoever stops
 * those stops it even when what follows fails), then {@link waitForOwnDeviceKeysUploaded}.
 */
export async function openUploadedCryptoClient(
  options: CryptoClientOptions,
  sessions: CryptoSession[],
): Promise<CryptoSession> {
  const session = await openCryptoClient(options);
  sessions.push(session);
  await step(
    `${session.userId} ${options.deviceDisplayName ?? "device"}'s device keys upload`,
    () => waitForOwnDeviceKeysUploaded(session),
  );
  return session;
}

/**
 * Resolve once the device's own keys are on the server: `/keys/query` for the user lists this
 * device with the same ed25519 key the crypto machine holds.
 */
export async function waitForOwnDeviceKeysUploaded(
  session: CryptoSession,
  timeoutMs = 30_000,
): Promise<void> {
  const own = await session.crypto.getOwnDeviceKeys();
  await waitUntil(
    `${session.userId} ${session.deviceId}'s device keys on the server`,
    async () => {
      const res = await session.client.downloadKeysForUsers([session.userId]);
      const device = res.device_keys?.[session.userId]?.[session.deviceId];
      return device?.keys?.[`ed25519:${session.deviceId}`] === own.ed25519;
    },
    timeoutMs,
    200,
  );
}

/**
 * A user-interactive-auth callback for the SDK that authenticates with the session's password:
 * it first tries without auth (servers may let a first cross-signing upload through), and on a
 * 401 with flows it answers the `m.login.password` stage with the session ID the server gave.
 */
export function passwordAuth(session: CryptoSession): <T>(
  makeRequest: (auth: sdk.AuthDict | null) => Promise<T>,
) => Promise<T> {
  return async <T>(makeRequest: (auth: sdk.AuthDict | null) => Promise<T>): Promise<T> => {
    try {
      return await makeRequest(null);
    } catch (error) {
      const e = error as sdk.MatrixError;
      const data = e.data as { flows?: { stages: string[] }[]; session?: string } | undefined;
      if (e.httpStatus !== 401 || !data?.flows) throw error;
      if (!data.flows.some((f) => f.stages.includes("m.login.password"))) {
        throw new Error(`no m.login.password stage offered: ${JSON.stringify(data)}`);
      }
      return await makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: session.userId },
        password: session.password,
        session: data.session,
      });
    }
  };
}

/**
 * Create a private room with `m.room.encryption` (m.megolm.v1.aes-sha2) in its initial state,
 * invite `invite`, and wait until the creator's client knows the room is encrypted.
 */
export async function createEncryptedRoom(
  session: CryptoSession,
  invite: string[],
  name = "Encrypted room",
): Promise<string> {
  const { room_id: roomId } = await step("createRoom (encrypted)", () =>
    session.client.createRoom({
      preset: sdk.Preset.PrivateChat,
      name,
      invite,
      initial_state: [{
        type: sdk.EventType.RoomEncryption,
        state_key: "",
        content: { algorithm: "m.megolm.v1.aes-sha2" },
      }],
    }));
  await waitForRoomEncrypted(session, roomId);
  return roomId;
}

/** Wait for the invite to `roomId` to reach this device, join, and wait until it knows it is encrypted. */
export async function joinEncryptedRoom(session: CryptoSession, roomId: string): Promise<void> {
  await waitUntil(
    `${session.userId} to see the invite to ${roomId}`,
    () => session.client.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite,
  );
  await step(`${session.userId} joins ${roomId}`, () => session.client.joinRoom(roomId));
  await waitForRoomEncrypted(session, roomId);
}

/**
 * Wait until this device has joined `roomId` and its crypto knows the room is encrypted; only
 * then does `sendTextMessage` encrypt (otherwise it would send plaintext).
 */
export async function waitForRoomEncrypted(session: CryptoSession, roomId: string): Promise<void> {
  await waitUntil(
    `${session.userId} ${session.deviceId} to know ${roomId} is encrypted`,
    async () =>
      session.client.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Join &&
      await session.crypto.isEncryptionEnabledInRoom(roomId),
  );
}

/** Wait until `userId` is a joined member of `roomId` as this device sees it. */
export async function waitForMember(
  session: CryptoSession,
  roomId: string,
  userId: string,
): Promise<void> {
  await waitUntil(
    `${session.userId} to see ${userId} joined in ${roomId}`,
    () =>
      session.client.getRoom(roomId)?.getMember(userId)?.membership === sdk.KnownMembership.Join,
  );
}

/**
 * Send `body` as m.text in an encrypted room (the SDK shares the megolm key with every device it
 * finds through `/keys/query` and `/keys/claim` first). Refuses to send if this device does not
 * know the room is encrypted. Returns the event ID.
 */
export async function sendEncryptedText(
  session: CryptoSession,
  roomId: string,
  body: string,
): Promise<string> {
  if (!await session.crypto.isEncryptionEnabledInRoom(roomId)) {
    throw new Error(`${session.userId} would send plaintext: ${roomId} is not encrypted for it`);
  }
  const { event_id } = await step(
    `${session.userId} sends "${body}"`,
    () => session.client.sendTextMessage(roomId, body),
  );
  return event_id;
}

/** A message as this device decrypted it. */
export interface DecryptedMessage {
  eventId: string;
  sender: string;
  body: string;
  /** The type on the wire (what the server stored): `m.room.encrypted` for an encrypted message. */
  wireType: string;
  /** The device that sent the megolm session, as the crypto machine knows it (null if unknown). */
  senderCurve25519?: string | null;
}

/**
 * The m.room.message events in this device's live timeline of `roomId` that arrived encrypted
 * through sync and were decrypted, oldest first.
 */
export function decryptedMessages(session: CryptoSession, roomId: string): DecryptedMessage[] {
  const room = session.client.getRoom(roomId);
  if (!room) return [];
  return room.getLiveTimeline().getEvents()
    .filter((e) =>
      e.isEncrypted() && !e.isDecryptionFailure() && !e.isBeingDecrypted() &&
      e.getType() === sdk.EventType.RoomMessage && e.status === null
    )
    .map((e) => ({
      eventId: e.getId()!,
      sender: e.getSender()!,
      body: String(e.getContent().body),
      wireType: e.getWireType(),
      senderCurve25519: e.getSenderKey(),
    }));
}

/**
 * Describe the encrypted events of `roomId` this device could NOT decrypt (event ID, sender,
 * failure reason), for failure messages.
 */
export function undecryptedEvents(session: CryptoSession, roomId: string): string[] {
  const room = session.client.getRoom(roomId);
  if (!room) return [`${session.userId} does not know ${roomId}`];
  return room.getLiveTimeline().getEvents()
    .filter((e) => e.isEncrypted() && (e.isDecryptionFailure() || e.isBeingDecrypted()))
    .map((e) =>
      `${e.getId()} from ${e.getSender()}: ${
        e.isBeingDecrypted() ? "still decrypting" : e.decryptionFailureReason
      }`
    );
}

/**
 * Wait until this device has received `eventId` (or, without one, any message with `body`) and
 * decrypted it to an m.room.message with that body; fail with the undecryptable events listed.
 */
export async function waitForDecryptedText(
  session: CryptoSession,
  roomId: string,
  body: string,
  eventId?: string,
  timeoutMs = 30_000,
): Promise<DecryptedMessage> {
  try {
    return await waitUntil(
      `${session.userId} ${session.deviceId} to decrypt "${body}"`,
      () =>
        decryptedMessages(session, roomId).find((m) =>
          m.body === body && (eventId === undefined || m.eventId === eventId)
        ),
      timeoutMs,
      100,
    );
  } catch (error) {
    const pending = undecryptedEvents(session, roomId);
    throw new Error(
      `${(error as Error).message}; undecrypted events: ${
        pending.length ? pending.join("; ") : "none"
      }`,
      { cause: error },
    );
  }
}

/**
 * A failure report for `sessions`: each device's requests answered with an error status and its
 * last `logLines` warnings/errors. Print it when a test fails.
 */
export function cryptoFailureReport(sessions: CryptoSession[], logLines = 40): string {
  const parts: string[] = [];
  const seen = new Set<string[]>();
  for (const s of sessions) {
    parts.push(`--- ${s.userId} ${s.deviceId}`);
    if (!seen.has(s.failures)) {
      seen.add(s.failures);
      parts.push(`failed requests:\n  ${s.failures.join("\n  ") || "none"}`);
    }
    parts.push(`client log (last ${logLines}):\n  ${s.logs.slice(-logLines).join("\n  ")}`);
  }
  parts.push(
    `--- SDK global log (last ${logLines}):\n  ${globalSdkLog.slice(-logLines).join("\n  ")}`,
  );
  return parts.join("\n");
}
