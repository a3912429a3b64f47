/** The services the HTTP layer is built from; `assembleServer` in main.ts wires the real ones. */
import type { Config } from "../domain/config.ts";
import type { RemoteMembershipStore } from "../domain/ports/remote_membership_store.ts";
import type { MembershipHandshakes } from "../domain/federation/membership_handshakes.ts";
import type { ServerKeyring } from "../domain/protocol/server_keys.ts";
import type { EventStore } from "../domain/ports/event_store.ts";
import type { LocalEventSender } from "../domain/local_event_sender.ts";
import type { SessionResolver } from "../domain/session.ts";
import type { AccountService } from "../domain/accounts/account_service.ts";
import type { UserInteractiveAuth } from "../domain/accounts/user_interactive_auth.ts";
import type { RateLimiter } from "../domain/rate_limiter.ts";
import type { SyncNotifier } from "../domain/sync/sync_notifier.ts";
import type { SyncStreamProvider } from "../domain/sync/sync_stream.ts";
import type { SlidingSyncService } from "../domain/sliding_sync/sliding_sync_service.ts";
import type { PushRuleService } from "../domain/push/push_rule_service.ts";
import type { NotificationCountService } from "../domain/push/notification_counts.ts";
import type { PusherService } from "../domain/push/pusher_service.ts";
import type { OutboxWorker } from "../domain/outbox/outbox_worker.ts";
import type { FederationSender } from "../domain/federation/federation_sender.ts";
import type { NotificationStore } from "../domain/ports/notification_store.ts";
import type { FilterService } from "../domain/sync/filters.ts";
import type { SentMembersStore } from "../domain/ports/sent_members_store.ts";
import type { StateQuota } from "../domain/rooms/state_quota.ts";
import type { ProfileService } from "../domain/profile/profile_service.ts";
import type { AccountDataService } from "../domain/account_data/account_data_service.ts";
import type { ReceiptService } from "../domain/ephemeral/receipt_service.ts";
import type { TypingService } from "../domain/ephemeral/typing_service.ts";
import type { PresenceService } from "../domain/ephemeral/presence_service.ts";
import type { Rooms } from "../domain/rooms/rooms.ts";
import type { TransactionStore } from "../domain/ports/transaction_store.ts";
import type { RoomEventService } from "../domain/room_events/room_event_service.ts";
import type { ReadPipeline } from "../domain/room_events/read_pipeline.ts";
import type { RelationReader } from "../domain/ports/relation_store.ts";
import type { RoomDirectoryStore } from "../domain/ports/room_directory_store.ts";
import type { DeviceListNotifier } from "../domain/e2ee/device_list_notifier.ts";
import type { CrossSigningService } from "../domain/e2ee/cross_signing_service.ts";
import type { DeviceKeyService } from "../domain/e2ee/device_key_service.ts";
import type { ServerKeyQueries } from "../domain/federation/server_key_queries.ts";
import type { DeviceListService } from "../domain/e2ee/device_list_service.ts";
import type { KeyBackupService } from "../domain/e2ee/key_backup_service.ts";
import type { ToDeviceService } from "../domain/e2ee/to_device_service.ts";
import type { DehydratedDeviceService } from "../domain/e2ee/dehydrated_device_service.ts";
import type { ThreepidService } from "../domain/threepid/threepid_service.ts";
import type { ThirdPartyInvites } from "../domain/threepid/third_party_invites.ts";
import type { RoomEventSearch } from "../domain/search/room_event_search.ts";
import type { SpaceService } from "../domain/spaces/space_service.ts";
import type { OpenIdTokenService } from "../domain/accounts/openid_tokens.ts";
import type { AccountModeration } from "../domain/moderation/account_moderation.ts";
import type { ContentReports } from "../domain/moderation/content_reports.ts";
import type { FederationTransport } from "../domain/ports/federation_transport.ts";
import type { KeyRing } from "../domain/federation/key_ring.ts";
import type { PduInput } from "../domain/federation/pdu_input/types.ts";
import type { TransactionReceiver } from "../domain/federation/inbound_transactions.ts";
import type { RemoteJoiner } from "../domain/federation/remote_join.ts";
import type { RemoteQueries } from "../domain/federation/remote_queries.ts";
import type { KeyNotary } from "../domain/federation/key_notary.ts";
import type { OAuthClientRegistry } from "../domain/oauth/client_registry.ts";
import type { OAuthGrants } from "../domain/oauth/oauth_grants.ts";
import type { CrossSigningResetApprovals } from "../domain/oauth/cross_signing_reset.ts";
import type { BrowserSessions } from "../domain/oauth/browser_sessions.ts";
import type { PendingAuthorizations } from "../domain/oauth/pending_authorizations.ts";
import type { UpstreamSignIn } from "../domain/oauth/upstream_sign_in.ts";
import type { MediaService } from "../domain/media/media_service.ts";
import type { ThumbnailService } from "../domain/media/thumbnail_service.ts";
import type { UrlPreviews } from "../domain/media/url_previews.ts";

/** What every route module may depend on. Areas add their services here. */
export interface AppDeps {
  config: Config;
  /**
   * Aborted when the process begins to shut down (Deno Deploy's SIGINT gives 5 s): waiting
   * long-polls answer at once instead of holding the shutdown until their timeout.
   */
  shutdown?: AbortSignal;
  keyring: ServerKeyring;
  /** Access token -> session; use with `requireSession(deps.sessions)`. */
  sessions: SessionResolver;
  /** Accounts, devices, logins and tokens. */
  accounts: AccountService;
  /** Server administrators, and account locks and suspensions (`/admin/lock`, `/admin/suspend`). */
  moderation: AccountModeration;
  /** Reports of rooms, events and users, kept for administrators. */
  reports: ContentReports;
  /** User-interactive auth (401 challenges, stages, sessions); reusable by any endpoint. */
  uia: UserInteractiveAuth;
  /** Token buckets behind `rateLimited(deps, action)`. */
  rateLimiter: RateLimiter;
  /** Resolves when storage answers; rejects (or returns false) when it does not. */
  storageHealthy(): Promise<boolean>;
  /** Clock, injectable for tests. */
  now?: () => number;
  /** Room events: the log, its projections and reads. */
  eventStore: EventStore;
  /** Builds, authorises and appends local events. */
  sender: LocalEventSender;
  /**
   * Memberships of local users in rooms this server is not in: invites received over
   * federation, their rejections, knocks sent (sync reads them beside the room projections).
   */
  remoteMemberships: RemoteMembershipStore;
  /** Serves make_/send_ join, leave and knock and inbound invites to other servers. */
  membershipHandshakes: MembershipHandshakes;
  /**
   * Client transaction IDs; `transactionIdFor(eventId, deviceId)` gives the sending device its
   * `unsigned.transaction_id`.
   */
  transactions: TransactionStore;
  /**
   * The one way events leave the server (history visibility, redaction, ignored users, format,
   * filter): every route that returns events reads them through it, never formats them itself.
   */
  readPipeline: ReadPipeline;
  /** Sending and reading room events (/event, /context, /messages, /state, /members). */
  roomEvents: RoomEventService;
  /** Relation projections: children, threads by activity, events by timestamp. */
  relations: RelationReader;
  /**
   * The media repository: uploads, reads (`open`, with remote media fetched and cached),
   * thumbnails as derived media (`putDerived`/`openDerived`), quarantine, the legacy read rule.
   */
  media: MediaService;
  /** Thumbnails of media, rendered on first request and stored as derived media. */
  thumbnails: ThumbnailService;
  /** URL previews (`preview_url`); absent when TESSERA_URL_PREVIEWS is off. */
  urlPreviews?: UrlPreviews;
  /** Wakes long-polling syncs: call `notifyUser`/`notifyRoom` after committing sync data. */
  syncNotifier: SyncNotifier;
  /** Sync streams besides rooms (account data, typing, receipts, ...); areas push theirs. */
  syncStreams: SyncStreamProvider[];
  /** Simplified sliding sync (MSC4186); absent: the endpoint is not served. */
  slidingSync?: SlidingSyncService;
  /** Uploaded sync filters, and resolving `/sync?filter=`. */
  filters: FilterService;
  /** Lazy-loaded member events each device was sent, so sync does not repeat them. */
  sentMembers?: SentMembersStore;
  /** Caps on room state bytes: `check(write)` before a local client's state event is sent. */
  stateQuota: StateQuota;
  /** Profiles; `profile(userId)` gives the displayname/avatar_url member events carry. */
  profiles: ProfileService;
  /** Global and per-room account data, tags and the read marker. */
  accountData: AccountDataService;
  /** Receipts and read markers; `latestReceipt(userId, roomId, threadId?)` for unread counts. */
  receipts: ReceiptService;
  /** Typing notifications. */
  typing: TypingService;
  /** Presence; sync calls `markFromSync(userId, set_presence)`. */
  presence: PresenceService;
  /** Room creation, membership, aliases, the public room directory and upgrades. */
  rooms: Rooms;
  /** Aliases, published rooms and forgotten rooms (`isForgotten(userId, roomId)` for sync). */
  roomDirectory: RoomDirectoryStore;
  /** Push rules: rulesets (`ruleset(userId)` renders the `m.push_rules` content) and edits. */
  pushRules: PushRuleService;
  /** Who was notified of what, for GET /notifications. */
  notifications: NotificationStore;
  /** Unread counts per room and thread for /sync: `countsFor(userId, roomIds)`. */
  notificationCounts: NotificationCountService;
  /** Users' pushers: `GET /pushers`, `POST /pushers/set`. */
  pushers: PusherService;
  /** Sends queued push notifications to push gateways; main.ts starts it. */
  pushSender: OutboxWorker;
  /**
   * Queues local events for the other servers in their rooms (a send-path hook) and sends them
   * as transactions; `sendEdus(entries)`, `eduMutations(entries)`, `noteInboundRequest(origin)`. main.ts starts it.
   */
  federationSender: FederationSender;
  /** Wakes syncs after a device-list change: `changed(userIds, versionstamp)` after the commit. */
  deviceListNotifier: DeviceListNotifier;
  /** Cross-signing keys and signatures, and /keys/query. */
  crossSigning: CrossSigningService;
  /**
   * Device keys, one-time keys and fallback keys: `/keys/upload`, `/keys/claim` and the counts
   * sync reports.
   */
  deviceKeys: DeviceKeyService;
  /** Other servers' questions about local users' keys (/user/keys/query, /claim, /devices). */
  serverKeyQueries: ServerKeyQueries;
  /** Device-list tracking: `keyChanges(userId, from, to)` for /keys/changes (sync has its stream). */
  deviceLists: DeviceListService;
  /** Server-side key backups: versions and backed-up room keys (`/room_keys`). */
  keyBackup: KeyBackupService;
  /** Send-to-device messaging: `send` for /sendToDevice (sync reads the inboxes itself). */
  toDevice: ToDeviceService;
  /** Dehydrated devices (MSC3814): the user's one tokenless device and its inbox. */
  dehydratedDevices: DehydratedDeviceService;
  /** Third-party identifiers: email validation, the account's addresses, identity servers. */
  threepids: ThreepidService;
  /** Invites by email through an identity server, and their exchange once the address is bound. */
  thirdPartyInvites: ThirdPartyInvites;
  /** Full-text search of room events (`POST /search`), every event through the read pipeline. */
  search: RoomEventSearch;
  /** Space hierarchies, room summaries and mutual rooms (local rooms). */
  spaces: SpaceService;
  /** OpenID tokens: issued to users, traded by third parties for the user's ID. */
  openIdTokens: OpenIdTokenService;
  /**
   * Requests to other homeservers (discovery, HTTPS, X-Matrix signing); refuses everything
   * when federation is off. Throws FederationUnreachable when no usable answer comes back.
   */
  federationTransport: FederationTransport;
  /**
   * Other servers' signing keys (and ours): `verifyKey(serverName, keyId, atTs)` for request
   * auth and event signatures; fetched and cached in KV, notaries as the fallback.
   */
  keyRing: KeyRing;
  /**
   * Checks and stores events other servers send (the spec's checks on receipt of a PDU, gaps
   * filled from the sender): `handle(origin, roomId, pdu)` for /send, send_join and backfill.
   */
  pduInput: PduInput;
  /** Inbound `/send` transactions: a result per PDU, each (origin, txnId) handled once. */
  transactionReceiver: TransactionReceiver;
  /** Answers `/_matrix/key/v2/query` with other servers' key documents, countersigned. */
  keyNotary: KeyNotary;
  /**
   * Called by `serverAuth` with the origin of every verified inbound federation request (the
   * federation sender resets that destination's backoff).
   */
  onInboundServerRequest?: (origin: string) => void | Promise<void>;
  /**
   * Joins of rooms this server is not in (make_join/send_join, checked, stored in steps);
   * `resumePending()` (a leased background job) finishes joins a dead process left half done.
   */
  remoteJoiner: RemoteJoiner;
  /** Another server's public room list (and its users' profiles), asked over federation. */
  remoteQueries: RemoteQueries;
  /**
   * OAuth 2.0 clients registered through RFC 7591 (`register`), and their look-up by client ID
   * (`get`) for the authorization, token and revocation endpoints and the pages.
   */
  oauthClients: OAuthClientRegistry;
  /**
   * OAuth grants: `issueCode` (consent), the token endpoint's grants, revocation, the device
   * grant (`deviceAuthorization`, `approveDevice`, `denyDevice` for the link page) and ID tokens.
   */
  oauthGrants: OAuthGrants;
  /**
   * Cross-signing resets the user approved in the account page, which the `m.oauth` UIA stage
   * of `/keys/device_signing/upload` takes (OAuth sessions have no password to prove).
   */
  crossSigningResetApprovals: CrossSigningResetApprovals;
  /**
   * Browser sessions of the sign-in, consent and account pages (use through
   * routes/oauth/browser_session.ts: `currentBrowserUser`, `signInBrowser`, `checkCsrf`).
   */
  browserSessions: BrowserSessions;
  /** Authorization requests waiting for sign-in and consent (authorization endpoint -> consent). */
  pendingAuthorizations: PendingAuthorizations;
  /**
   * Sign-in with the upstream OpenID Connect provider (`TESSERA_OIDC_*`), absent when none is
   * configured: flows and subject links in KV, new users provisioned from the claims.
   */
  upstreamSignIn?: UpstreamSignIn;
}
