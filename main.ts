/**
 * Tessera's entry point: read the configuration, open KV, assemble the server and serve.
 * Locally it runs on an embedded KV file; on Deno Deploy `Deno.openKv()` takes no path.
 */
import { DeviceListNotifier } from "./domain/e2ee/device_list_notifier.ts";
import { CrossSigningService } from "./domain/e2ee/cross_signing_service.ts";
import { SignatureNoticeStream } from "./domain/e2ee/signature_notice_stream.ts";
import { KvCrossSigningStore } from "./kv/cross_signing_store.ts";
import { DeviceKeyService } from "./domain/e2ee/device_key_service.ts";
import { OneTimeKeyStream } from "./domain/e2ee/one_time_key_stream.ts";
import { KvDeviceKeyStore } from "./kv/device_key_store.ts";
import { DeviceListService } from "./domain/e2ee/device_list_service.ts";
import { DeviceListStream } from "./domain/e2ee/device_list_stream.ts";
import { KvDeviceListReader } from "./kv/device_list_reads.ts";
import { KeyBackupService } from "./domain/e2ee/key_backup_service.ts";
import { KvKeyBackupStore } from "./kv/key_backup_store.ts";
import { MAX_TO_DEVICE_EVENT_BYTES, ToDeviceService } from "./domain/e2ee/to_device_service.ts";
import { ToDeviceStream } from "./domain/e2ee/to_device_stream.ts";
import { SlidingSyncService } from "./domain/sliding_sync/sliding_sync_service.ts";
import { buildExtensions, extensionProvidersFrom } from "./domain/sliding_sync/extensions.ts";
import { RoomDataBuilder } from "./domain/sliding_sync/room_data.ts";
import { KvRoomListSource } from "./kv/room_list_source.ts";
import { KvSlidingConnectionStore } from "./kv/sliding_sync_connection_store.ts";
import { KvToDeviceStore } from "./kv/to_device_store.ts";
import { DehydratedDeviceService } from "./domain/e2ee/dehydrated_device_service.ts";
import type { Hono } from "hono";
import { type Config, ConfigError, configFromDenoEnv } from "./domain/config.ts";
import { generateSigningSeed } from "./domain/protocol/signing.ts";
import { keyringFromSeed, type ServerKeyring } from "./domain/protocol/server_keys.ts";
import { type LocalEventHook, LocalEventSender } from "./domain/local_event_sender.ts";
import { SyncNotifier } from "./domain/sync/sync_notifier.ts";
import type { WakeSource } from "./domain/ports/wake_source.ts";
import { openWakeSource } from "./kv/wake_sources.ts";
import type { SyncStreamProvider } from "./domain/sync/sync_stream.ts";
import { FilterService } from "./domain/sync/filters.ts";
import { KvFilterStore } from "./kv/filter_store.ts";
import { KvSentMembersStore } from "./kv/sent_members_store.ts";
import { StateQuota } from "./domain/rooms/state_quota.ts";
import { KvStateUsageReader } from "./kv/state_usage_reads.ts";
import { resolveState } from "./domain/protocol/state_res/resolve_state.ts";
import { serverNameOf } from "./domain/protocol/auth_context.ts";
import { FederationPduInput } from "./domain/federation/pdu_input/index.ts";
import { keyRingVerifier } from "./domain/federation/pdu_input/signatures.ts";
import { TransactionReceiver } from "./domain/federation/inbound_transactions.ts";
import { EduDispatcher } from "./domain/federation/edu_input.ts";
import {
  TYPING_EDU,
  TypingEduHandler,
  TypingEduSender,
} from "./domain/federation/edus/typing_edu.ts";
import {
  RECEIPT_EDU,
  ReceiptEduHandler,
  ReceiptEduSender,
} from "./domain/federation/edus/receipt_edu.ts";
import { DeviceListSender } from "./domain/federation/edus/device_list_sender.ts";
import { KvDeviceListOutbound } from "./kv/device_list_outbound.ts";
import {
  DIRECT_TO_DEVICE_EDU,
  DirectToDeviceEduHandler,
} from "./domain/federation/edus/to_device_edu.ts";
import { KvInboundTransactionStore } from "./kv/inbound_transaction_store.ts";
import { KvEventStore } from "./kv/kv_event_store.ts";
import { loadOrCreateSigningSeed } from "./kv/server_signing_seed.ts";
import { openKv } from "./kv/open_kv.ts";
import { buildApp } from "./routes/app.ts";
import { AccountService } from "./domain/accounts/account_service.ts";
import { PasswordHasher, type ScryptParams } from "./domain/accounts/password_hash.ts";
import { UserInteractiveAuth } from "./domain/accounts/user_interactive_auth.ts";
import { RateLimiter } from "./domain/rate_limiter.ts";
import { SharedRateCounters } from "./domain/shared_rate_counters.ts";
import { KvRateLimitStore } from "./kv/rate_limit_store.ts";
import { KvAccountStore } from "./kv/account_store.ts";
import { PasswordFailureLimiter } from "./domain/accounts/password_failures.ts";
import { KvPasswordFailureStore } from "./kv/password_failure_store.ts";
import { KvModerationStore } from "./kv/moderation_store.ts";
import { MatrixError } from "./domain/errors.ts";
import {
  AccountModeration,
  ModeratedSessionResolver,
} from "./domain/moderation/account_moderation.ts";
import { ContentReports } from "./domain/moderation/content_reports.ts";
import { partFromAllRooms } from "./domain/rooms/account_parting.ts";
import { GuestEvictor } from "./domain/rooms/guest_access.ts";
import type { AppDeps } from "./routes/deps.ts";
import { unverifiedTlsFetch } from "./outbound/unverified_tls_fetch.ts";
import { SmtpMailer } from "./outbound/smtp_mailer.ts";
import { KvThreepidStore } from "./kv/threepid_store.ts";
import { IdentityServerClient } from "./domain/threepid/identity_server_client.ts";
import { ThreepidValidation } from "./domain/threepid/threepid_validation.ts";
import { ThreepidService } from "./domain/threepid/threepid_service.ts";
import { ThirdPartyInvites } from "./domain/threepid/third_party_invites.ts";
import { clientBaseUrl } from "./domain/discovery.ts";
import { KvTransactionStore } from "./kv/transaction_store.ts";
import { RoomEventSearch } from "./domain/search/room_event_search.ts";
import { KvSearchIndex } from "./kv/search_index.ts";
import { SpaceService } from "./domain/spaces/space_service.ts";
import { OpenIdTokenService } from "./domain/accounts/openid_tokens.ts";
import { KvOpenIdTokenStore } from "./kv/openid_token_store.ts";
import { OAuthClientRegistry } from "./domain/oauth/client_registry.ts";
import { KvOAuthClientStore } from "./kv/oauth_client_store.ts";
import { type ClientLookup, OAuthGrants } from "./domain/oauth/oauth_grants.ts";
import { IdTokenSigner } from "./domain/oauth/id_tokens.ts";
import { KvOAuthGrantStore } from "./kv/oauth_grant_store.ts";
import { KvCrossSigningResetApprovalStore } from "./kv/cross_signing_reset_approval_store.ts";
import { CrossSigningResetApprovals } from "./domain/oauth/cross_signing_reset.ts";
import { BrowserSessions } from "./domain/oauth/browser_sessions.ts";
import { PendingAuthorizations } from "./domain/oauth/pending_authorizations.ts";
import { UpstreamSignIn } from "./domain/oauth/upstream_sign_in.ts";
import { oauthUrl, UPSTREAM_PATHS } from "./domain/oauth/oauth_paths.ts";
import { KvUpstreamSignInStore } from "./kv/upstream_sign_in_store.ts";
import { UpstreamOidcClient } from "./outbound/upstream_oidc_client.ts";
import { KvBrowserSessionStore, KvPendingAuthorizationStore } from "./kv/browser_session_store.ts";
import { RoomEventService } from "./domain/room_events/room_event_service.ts";
import { ReadPipeline, type ReadPipelineDeps } from "./domain/room_events/read_pipeline.ts";
import { KvRelationReader } from "./kv/relation_reads.ts";
import { NotificationPlanner } from "./domain/push/notification_planner.ts";
import { NotificationCountService } from "./domain/push/notification_counts.ts";
import { PushRuleService } from "./domain/push/push_rule_service.ts";
import { pushRulesSyncStream } from "./domain/push/push_rules_sync.ts";
import type { EventStore } from "./domain/ports/event_store.ts";
import type { ReceiptReader } from "./domain/ports/receipt_store.ts";
import { KvNotificationStore } from "./kv/notification_store.ts";
import { KvPushRuleStore } from "./kv/push_rule_store.ts";
import { PusherService } from "./domain/push/pusher_service.ts";
import { KvPusherStore } from "./kv/pusher_store.ts";
import { KvOutboxStore } from "./kv/outbox_store.ts";
import { KvJobLeaseStore } from "./kv/job_lease_store.ts";
import { LeasedJobRunner } from "./domain/jobs/leased_job_runner.ts";
import { backgroundJobs } from "./domain/jobs/background_jobs.ts";
import { OutboxWorker } from "./domain/outbox/outbox_worker.ts";
import {
  badgeAppends,
  PUSH_STREAM,
  PushDelivery,
  type PushDeliveryDeps,
} from "./domain/push/push_delivery.ts";
import { GuardedFetch } from "./outbound/guarded_fetch.ts";
import type { FederationTransport } from "./domain/ports/federation_transport.ts";
import { federationClientFromConfig } from "./outbound/federation_client.ts";
import { KvWellKnownCache } from "./kv/well_known_cache.ts";
import { FederationKeyRing } from "./domain/federation/key_ring.ts";
import { KeyNotary } from "./domain/federation/key_notary.ts";
import { KvServerKeyStore } from "./kv/server_key_store.ts";
import { FederationSender } from "./domain/federation/federation_sender.ts";
import { FEDERATION_STREAM } from "./domain/federation/federation_transactions.ts";
import { AccountDataService } from "./domain/account_data/account_data_service.ts";
import { AccountDataStream } from "./domain/account_data/account_data_stream.ts";
import {
  PresenceStream,
  ReceiptStream,
  TypingStream,
} from "./domain/ephemeral/ephemeral_streams.ts";
import { PresenceService, type PresenceServiceDeps } from "./domain/ephemeral/presence_service.ts";
import { PresenceEduHandler, PresenceFederation } from "./domain/federation/edus/presence_edu.ts";
import { type ReceiptFederation, ReceiptService } from "./domain/ephemeral/receipt_service.ts";
import { type TypingFederation, TypingService } from "./domain/ephemeral/typing_service.ts";
import { MembershipEndedHook } from "./domain/rooms/membership_ended_hook.ts";
import {
  type ProfileReader,
  ProfileService,
  type ProfileServiceDeps,
} from "./domain/profile/profile_service.ts";
import { KvAccountDataStore } from "./kv/account_data_store.ts";
import { KvPresenceStore } from "./kv/presence_store.ts";
import { KvProfileStore } from "./kv/profile_store.ts";
import { KvReceiptStore } from "./kv/receipt_store.ts";
import { KvTypingStore } from "./kv/typing_store.ts";
import type { RoomDirectoryStore } from "./domain/ports/room_directory_store.ts";
import { Rooms } from "./domain/rooms/rooms.ts";
import type { RemoteJoinService } from "./domain/rooms/room_services.ts";
import { RemoteJoiner } from "./domain/federation/remote_join.ts";
import { RemoteQueries } from "./domain/federation/remote_queries.ts";
import { RemoteKeyClient } from "./domain/federation/remote_keys.ts";
import { RemoteDeviceCache } from "./domain/e2ee/remote_device_cache.ts";
import { CachedRemoteKeyQuerier } from "./domain/e2ee/cached_remote_key_querier.ts";
import { RemoteDeviceSharingHook } from "./domain/e2ee/remote_device_sharing.ts";
import { KvRemoteDeviceStore } from "./kv/remote_device_store.ts";
import {
  DEVICE_LIST_UPDATE_EDU,
  DeviceListEduHandler,
} from "./domain/federation/edus/device_list_edu.ts";
import {
  SIGNING_KEY_UPDATE_EDU,
  SigningKeyEduHandler,
} from "./domain/federation/edus/signing_key_edu.ts";
import { userSharesRoomWithServer } from "./domain/federation/room_sharing.ts";
import { ServerKeyQueries } from "./domain/federation/server_key_queries.ts";
import type { RemoteKeyQuerier } from "./domain/e2ee/key_query.ts";
import { deviceListDeviceStreamId } from "./kv/device_list_log.ts";
import { RemoteBackfill } from "./domain/federation/backfill.ts";
import { verifyEventSignatures } from "./domain/federation/event_signatures.ts";
import { KvPendingJoinStore } from "./kv/pending_join_store.ts";
import { KvRemoteMembershipStore } from "./kv/remote_membership_store.ts";
import { KvRoomDirectoryStore } from "./kv/room_directory_store.ts";
import { MembershipHandshakes } from "./domain/federation/membership_handshakes.ts";
import { RemoteMembershipService } from "./domain/federation/remote_membership.ts";
import type { RemoteMembershipActions } from "./domain/rooms/room_services.ts";
import { MediaService } from "./domain/media/media_service.ts";
import { KvMediaStore } from "./kv/media_store.ts";
import { ThumbnailService } from "./domain/media/thumbnail_service.ts";
import { WorkerThumbnailRenderer } from "./domain/media/thumbnail_renderer.ts";
import { FederationRemoteMedia } from "./outbound/remote_media_client.ts";
import { UrlPreviews } from "./domain/media/url_previews.ts";
import { KvUrlPreviewCache } from "./kv/url_preview_cache.ts";
import { previewFetcherFromConfig } from "./outbound/url_preview_fetcher.ts";

/** An assembled server: the HTTP app and the services behind it. */
export interface AssembledServer {
  app: Hono;
  deps: AppDeps;
  /** Wake-ups from other processes' commits; close it before KV (server shutdown, tests). */
  wakeSource: WakeSource;
}

/** The OAuth grants over KV: one store for codes and device grants, and the signing key. */
function assembleOAuthGrants(
  kv: Deno.Kv,
  config: Config,
  accounts: AccountService,
  now: (() => number) | undefined,
  clients: ClientLookup,
): OAuthGrants {
  const store = new KvOAuthGrantStore(kv, now);
  return new OAuthGrants({
    store,
    accounts,
    clients,
    idTokens: new IdTokenSigner(store, config, now),
    config,
    now,
  });
}

/**
 * Upstream OpenID Connect sign-in when a provider is configured: oauth4webapi behind the
 * address guard, flows and links in KV, accounts created without a password or device.
 */
function assembleUpstreamSignIn(
  kv: Deno.Kv,
  config: Config,
  accounts: AccountService,
  accountStore: KvAccountStore,
  profiles: { initialiseProfile(userId: string, displayName?: string): Promise<void> },
  now: (() => number) | undefined,
): { upstreamSignIn?: UpstreamSignIn } {
  const provider = config.upstreamOidc;
  if (provider === undefined) return {};
  const upstreamSignIn = new UpstreamSignIn({
    provider: new UpstreamOidcClient(provider, { now }),
    store: new KvUpstreamSignInStore(kv, now),
    accounts: {
      serverName: config.serverName,
      status: async (userId) => {
        const account = await accountStore.getAccount(userId);
        return account === null ? "absent" : account.deactivated ? "deactivated" : "active";
      },
      create: async (localpart) =>
        (await accounts.register({ localpart, inhibitLogin: true })).userId,
      initialiseProfile: (userId, displayName) => profiles.initialiseProfile(userId, displayName),
      discard: (userId) => accounts.deactivations.deactivate(userId),
    },
    options: {
      providerId: provider.id,
      localpartClaim: provider.localpartClaim,
      displayNameClaim: provider.displayNameClaim,
      callbackUrl: oauthUrl(config, UPSTREAM_PATHS.callback(provider.id)),
    },
    now,
  });
  return { upstreamSignIn };
}

/** Wire storage, protocol services and routes together over an open KV database. */
export async function assembleServer(
  config: Config,
  kv: Deno.Kv,
  options: {
    now?: () => number;
    /** scrypt cost; tests pass a low logN to stay fast, servers keep the strong default. */
    passwordHashing?: ScryptParams;
    /** Builds the read pipeline; tests pass a spying subclass (tests/security). */
    readPipeline?: (deps: ReadPipelineDeps) => ReadPipeline;
    /** Requests to other homeservers; tests pass the in-process network's transport. */
    federationTransport?: FederationTransport;
    /** Wake-ups across processes; absent: built from `config.wake` (TESSERA_WAKE). */
    wakeSource?: WakeSource;
    /** Aborted when shutting down: waiting long-polls answer at once (AppDeps.shutdown). */
    shutdown?: AbortSignal;
  } = {},
): Promise<AssembledServer> {
  const seed = config.signingKeySeed ?? (await loadOrCreateSigningSeed(kv, generateSigningSeed));
  const keyring = await keyringFromSeed(config.serverName, seed, config.oldSigningKeys);
  const eventStore = new KvEventStore(kv, { resolver: resolveState });
  // Filled below, once the services the hooks need exist (the sender runs them per event).
  const eventHooks: LocalEventHook[] = [];
  const sender = new LocalEventSender({
    store: eventStore,
    serverName: config.serverName,
    signingKey: keyring.current,
    now: options.now,
    eventHooks,
  });
  // Long-polls (and outbox workers) hear of other processes' commits through this.
  const wakeSource = options.wakeSource ??
    openWakeSource(kv, config.wake.mode, config.wake.pollMs);
  const syncNotifier = new SyncNotifier(wakeSource);
  syncNotifier.attach(eventStore);
  // Sync streams other than rooms; each area pushes its provider here.
  const syncStreams: SyncStreamProvider[] = [];
  const push = assemblePush({
    kv,
    serverName: config.serverName,
    eventStore,
    syncNotifier,
    syncStreams,
    wakeSource,
    now: options.now,
  });
  eventHooks.push(push.planner);
  // Another server's profiles and room list, asked over federation for local clients.
  const remoteQueries = new RemoteQueries({
    transport: { request: (request) => deps.federationTransport.request(request) },
  });
  const userData = assembleUserData({
    kv,
    serverName: config.serverName,
    remoteProfiles: remoteQueries,
    // Local users' presence changes go to the servers sharing a room with them (built below).
    federatePresence: (record) => presenceFederation.send(record),
    // Local users' typing and public receipts go to the room's other servers (sender below).
    ...(config.federation.enabled
      ? ephemeralFederation(eventStore, config.serverName, {
        sendEdus: (entries) => federationSender.sendEdus(entries),
      }, options.now)
      : {}),
    eventStore,
    sender,
    syncNotifier,
    syncStreams,
    now: options.now,
    readReceiptMoved: (userId) =>
      push.readReceiptMoved(userId).catch((error) =>
        console.warn("push: badge update not queued", userId, error)
      ),
  });
  // A member who leaves stops typing there at once (other servers told for local users).
  eventHooks.push(
    new MembershipEndedHook(
      (roomId, userId) =>
        userData.typing.membershipEnded(
          userId,
          roomId,
          serverNameOf(userId) === config.serverName,
        ),
      "typing: not ended on leave",
    ),
  );
  const accountStore = new KvAccountStore(kv, options.now);
  // Read from KV on every call: a deactivation in any process counts at once.
  const accountIsActive = async (userId: string): Promise<boolean> => {
    const account = await accountStore.getAccount(userId);
    return account !== null && !account.deactivated;
  };
  const accounts = new AccountService({
    store: accountStore,
    serverName: config.serverName,
    guestAccess: config.guestAccess,
    hasher: new PasswordHasher(options.passwordHashing),
    // Failed password attempts per account, counted in KV so every isolate shares the count.
    passwordFailures: config.rateLimits
      ? new PasswordFailureLimiter(new KvPasswordFailureStore(kv), { now: options.now })
      : undefined,
    now: options.now,
  });
  const browserSessions = new BrowserSessions({
    store: new KvBrowserSessionStore(kv, options.now),
    accountActive: accountIsActive,
    now: options.now,
  });
  // A changed password that logs devices out signs browsers out of the pages too (the old
  // password may have leaked, and a signed-in browser can consent to new grants).
  accounts.passwordChangedHooks.push(async (userId, { logoutDevices }) => {
    if (logoutDevices) await browserSessions.endAll(userId);
  });
  // Locks and suspensions are read from KV on every request, so all processes agree at once.
  const moderationStore = new KvModerationStore(kv);
  const moderation = new AccountModeration({
    store: moderationStore,
    serverName: config.serverName,
    admins: config.admins,
    accountIsActive,
    now: options.now,
  });
  accounts.loginChecks.push(async (userId) => {
    if ((await moderation.status(userId)).locked) {
      throw new MatrixError("M_USER_LOCKED", 401, "This account has been locked", {
        soft_logout: true,
      });
    }
  });
  const transactions = new KvTransactionStore(kv);
  // The one way events leave the server: every reader gets this instance.
  const relations = new KvRelationReader(kv);
  const pipelineDeps: ReadPipelineDeps = {
    store: eventStore,
    accountData: new KvAccountDataStore(kv),
    transactions,
    now: options.now ?? Date.now,
    serverName: config.serverName,
    relations,
    erasure: accountStore,
  };
  const readPipeline = options.readPipeline?.(pipelineDeps) ?? new ReadPipeline(pipelineDeps);
  const deviceListNotifier = new DeviceListNotifier(eventStore, syncNotifier);
  // One store per process: its claim queue batches concurrent claims of one device's keys.
  const deviceKeyStore = new KvDeviceKeyStore(kv);
  // Other servers' users' keys, asked of their servers (answers checked); part of /keys/query
  // and /keys/claim for remote users.
  const remoteKeys = new RemoteKeyClient({
    transport: { request: (request) => deps.federationTransport.request(request) },
  });
  // Other servers' users' device lists, cached while we share a room with them (kept fresh by
  // their m.device_list_update / m.signing_key_update EDUs, resynced on gaps); /keys/query
  // answers from it, asking servers directly only for users sharing no room with us.
  const remoteDevices = new RemoteDeviceCache({
    store: new KvRemoteDeviceStore(kv),
    source: remoteKeys,
    sharesRoom: (userId) => userSharesRoomWithServer(eventStore, userId, config.serverName),
    changed: (userIds, versionstamp) => deviceListNotifier.changed(userIds, versionstamp),
    log: console.warn,
  });
  const remoteKeyQuerier: RemoteKeyQuerier = new CachedRemoteKeyQuerier({
    cache: remoteDevices,
    direct: remoteKeys,
  });
  const deviceKeys = new DeviceKeyService({
    store: deviceKeyStore,
    serverName: config.serverName,
    deviceListNotifier,
    devices: accounts,
    remote: remoteKeys,
  });
  const keyBackup = new KeyBackupService(new KvKeyBackupStore(kv));
  accounts.deactivations.hooks.push((userId) => keyBackup.deleteAllVersions(userId));
  accounts.devicesRemovedHooks.push((userId, deviceIds) =>
    deviceKeys.devicesRemoved(userId, deviceIds)
  );
  accounts.deviceRenamedHooks.push((userId, deviceId) =>
    deviceKeys.deviceRenamed(userId, deviceId)
  );
  accounts.deviceAddedHooks.push((userId, deviceId) => deviceKeys.deviceAdded(userId, deviceId));
  syncStreams.push(new OneTimeKeyStream(deviceKeys));
  const crossSigningStore = new KvCrossSigningStore(kv);
  const crossSigning = new CrossSigningService({
    store: crossSigningStore,
    deviceKeys: deviceKeyStore,
    devicesOf: (userId) => accounts.listDevices(userId),
    deviceListsChanged: (userIds, versionstamp) =>
      deviceListNotifier.changed(userIds, versionstamp),
    notifyUser: (userId, versionstamp) => syncNotifier.notifyUser(userId, versionstamp),
    serverName: config.serverName,
    remote: remoteKeyQuerier,
  });
  accounts.devicesRemovedHooks.push((userId, deviceIds) =>
    crossSigning.devicesRemoved(userId, deviceIds)
  );
  syncStreams.push(new SignatureNoticeStream(crossSigningStore));
  const deviceLists = new DeviceListService(new KvDeviceListReader(kv));
  syncStreams.push(new DeviceListStream(deviceLists));
  const toDeviceStore = new KvToDeviceStore(kv);
  const toDevice = new ToDeviceService({
    store: toDeviceStore,
    devices: accounts,
    serverName: config.serverName,
    notifyUser: (userId, versionstamp) => syncNotifier.notifyUser(userId, versionstamp),
    // Remote recipients' EDUs ride in the request's commits (the sender is built below).
    federation: {
      eduMutations: (entries) => federationSender.eduMutations(entries),
      wake: () => federationSender.wake(),
    },
  });
  accounts.devicesRemovedHooks.push((userId, deviceIds) =>
    toDevice.devicesRemoved(userId, deviceIds)
  );
  syncStreams.push(new ToDeviceStream(toDeviceStore));
  // A pusher goes with the device whose access token set it (logout, a password change).
  accounts.devicesRemovedHooks.push((userId, deviceIds) =>
    push.pushers.devicesRemoved(userId, deviceIds)
  );
  const notificationCounts = push.countsWith(userData.receipts);
  // Local events go to the other servers in their rooms, queued in the event's own commit.
  const federationSender = new FederationSender({
    store: eventStore,
    outbox: new KvOutboxStore(kv, FEDERATION_STREAM),
    // The transport is built with AppDeps below; nothing is sent before main() starts the sender.
    transport: { request: (request) => deps.federationTransport.request(request) },
    serverName: config.serverName,
    enabled: config.federation.enabled,
    now: options.now,
    // Appends other processes commit wake it (no polling); a timer only for retries due.
    worker: { wakes: { source: wakeSource, topic: { kind: "outbox", stream: FEDERATION_STREAM } } },
  });
  eventHooks.push(federationSender);
  // A membership change that ends our sharing a room with a remote user drops their cache.
  eventHooks.push(
    new RemoteDeviceSharingHook({
      events: eventStore,
      cache: remoteDevices,
      serverName: config.serverName,
    }),
  );
  // Local users' device-list and cross-signing changes go to the servers sharing a room with
  // them, queued after each change's commit in the caller's request.
  const deviceListSender = new DeviceListSender({
    outbound: new KvDeviceListOutbound(kv),
    store: eventStore,
    federation: federationSender,
    keysForServers: (query) => deps.serverKeyQueries.query(query),
    devicesOf: (userId) => accounts.listDevices(userId),
    serverName: config.serverName,
    enabled: config.federation.enabled,
  });
  deviceListNotifier.changeHooks.push((userIds) => deviceListSender.changed(userIds));
  // Inbound EDUs by type; each area registers its handler where it is built.
  const eduDispatcher = new EduDispatcher();
  // Presence to and from the servers sharing a room with a user, and on joins.
  const presenceFederation = new PresenceFederation({
    events: eventStore,
    presence: new KvPresenceStore(kv),
    sender: federationSender,
    serverName: config.serverName,
    enabled: config.federation.enabled,
    now: options.now,
  });
  eventHooks.push(presenceFederation);
  eduDispatcher.register(
    "m.presence",
    new PresenceEduHandler({
      events: eventStore,
      presence: userData.presence,
      serverName: config.serverName,
      now: options.now,
    }),
  );
  // Other servers' users typing and reading, checked against the room and stored beside ours.
  eduDispatcher.register(
    TYPING_EDU,
    new TypingEduHandler({
      store: eventStore,
      serverName: config.serverName,
      typing: userData.typing,
    }),
  );
  eduDispatcher.register(
    RECEIPT_EDU,
    new ReceiptEduHandler({
      store: eventStore,
      serverName: config.serverName,
      receipts: userData.receipts,
    }),
  );
  eduDispatcher.register(
    DIRECT_TO_DEVICE_EDU,
    new DirectToDeviceEduHandler({
      serverName: config.serverName,
      deliver: (messages) => toDevice.receiveRemote(messages),
      maxEventBytes: MAX_TO_DEVICE_EVENT_BYTES,
    }),
  );
  // Other servers' users' device and cross-signing key changes, into the remote device cache.
  eduDispatcher.register(DEVICE_LIST_UPDATE_EDU, new DeviceListEduHandler(remoteDevices));
  eduDispatcher.register(SIGNING_KEY_UPDATE_EDU, new SigningKeyEduHandler(remoteDevices));
  const roomDirectory = new KvRoomDirectoryStore(kv);
  // Joining remote rooms; the transport and key ring are the ones AppDeps gets below.
  const remoteJoiner = new RemoteJoiner({
    store: eventStore,
    transport: { request: (request) => deps.federationTransport.request(request) },
    serverName: config.serverName,
    signingKey: keyring.current,
    verifySignatures: (pdu, version) => verifyEventSignatures(pdu, version, deps.keyRing),
    pendingJoins: new KvPendingJoinStore(kv),
    remoteMemberships: new KvRemoteMembershipStore(kv),
    joinMutations: (userId, roomId) => roomDirectory.forgottenMutations(userId, roomId, false),
    // The room's other servers learn the joined user's presence.
    afterJoin: (userId, roomId) => presenceFederation.userJoined(userId, roomId),
    now: options.now,
  });
  // Events other servers send: the spec's checks on receipt, gaps filled from the sender, and
  // for accepted ones the hooks local sends run (the federation sender skips remote senders).
  const pduInput = new FederationPduInput({
    store: eventStore,
    transport: { request: (request) => deps.federationTransport.request(request) },
    verifySignatures: (pdu, version) => keyRingVerifier(deps.keyRing)(pdu, version),
    resolver: resolveState,
    eventHooks,
  });
  // Memberships in rooms this server is not in, and the membership handshakes both ways; the
  // transport and key ring are the ones AppDeps gets below.
  const remoteMemberships = new KvRemoteMembershipStore(kv);
  const notifyMembership = (userId: string, versionstamp: string) =>
    syncNotifier.notifyUser(userId, versionstamp);
  const lazyKeyRing = {
    verifyKey: (server: string, keyId: string, atTs: number) =>
      deps.keyRing.verifyKey(server, keyId, atTs),
  };
  const remoteMembership = new RemoteMembershipService({
    store: eventStore,
    transport: { request: (request) => deps.federationTransport.request(request) },
    serverName: config.serverName,
    signingKey: keyring.current,
    keyRing: lazyKeyRing,
    remoteMemberships,
    notifyUser: notifyMembership,
    now: options.now,
  });
  const deps: AppDeps = {
    remoteMemberships,
    membershipHandshakes: new MembershipHandshakes({
      store: eventStore,
      serverName: config.serverName,
      signingKey: keyring.current,
      keyRing: lazyKeyRing,
      remoteMemberships,
      readForServer: (read, events) => readPipeline.readForServer(read, events),
      pduInput: { handle: (...args) => deps.pduInput.handle(...args) },
      // Joins, leaves and knocks a server sends us alone go on to the room's other servers.
      forwarder: federationSender,
      notifyUser: notifyMembership,
      userExists: accountIsActive,
      now: options.now,
    }),
    config,
    media: new MediaService(new KvMediaStore(kv), {
      serverName: config.serverName,
      maxUploadBytes: config.media.maxUploadBytes,
      quotaBytes: config.media.quotaBytes,
      legacy: config.media.legacy,
      now: options.now,
    }),
    // Rendered in a Worker stopped after 10 s, so no image can hold the server's isolate.
    thumbnails: new ThumbnailService(
      {
        open: (...args) => deps.media.open(...args),
        meta: (...args) => deps.media.meta(...args),
        openDerived: (key) => deps.media.openDerived(key),
        putDerived: (...args) => deps.media.putDerived(...args),
      },
      new WorkerThumbnailRenderer(),
      { maxPixels: config.media.maxPixels },
    ),
    // TESSERA_URL_PREVIEWS=off: absent, and preview_url is not served.
    ...(config.media.urlPreviews
      ? {
        urlPreviews: new UrlPreviews({
          fetcher: previewFetcherFromConfig(config),
          cache: new KvUrlPreviewCache(kv, options.now),
          images: { upload: (body, info) => deps.media.upload(body, info) },
          now: options.now,
        }),
      }
      : {}),
    ...(options.shutdown ? { shutdown: options.shutdown } : {}),
    keyring,
    sessions: new ModeratedSessionResolver(accounts, moderation),
    accounts,
    moderation,
    reports: new ContentReports(moderationStore, eventStore, options.now),
    uia: new UserInteractiveAuth(accountStore, options.now),
    // Every process's hits count against the fleet's counters in KV (batched, no commit per
    // request), so N processes do not allow N times the limit.
    rateLimiter: new RateLimiter(
      undefined,
      options.now,
      new SharedRateCounters(new KvRateLimitStore(kv), {
        now: options.now,
        flushIntervalMs: config.rateLimitFlushMs,
      }),
    ),
    now: options.now,
    storageHealthy: async () => {
      await kv.get(["health"]);
      return true;
    },
    eventStore,
    sender,
    transactions,
    readPipeline,
    relations,
    roomEvents: new RoomEventService({
      store: eventStore,
      sender,
      transactions,
      pipeline: readPipeline,
      relations,
      // /messages past the oldest event held fetches history from the room's other servers.
      backfill: new RemoteBackfill({
        store: eventStore,
        transport: { request: (request) => deps.federationTransport.request(request) },
        serverName: config.serverName,
        verifySignatures: (pdu, version) => keyRingVerifier(deps.keyRing)(pdu, version),
        resolver: resolveState,
      }),
    }),
    syncNotifier,
    syncStreams,
    deviceListNotifier,
    crossSigning,
    deviceKeys,
    // Other servers' /user/keys/query, /user/keys/claim and /user/devices.
    serverKeyQueries: new ServerKeyQueries({
      keys: {
        store: crossSigningStore,
        deviceKeys: deviceKeyStore,
        devicesOf: (userId) => accounts.listDevices(userId),
        serverName: config.serverName,
      },
      claimLocal: (query) => deviceKeys.claim(query, 0),
      // The last device position: what the next m.device_list_update names as its prev_id.
      deviceListStreamId: (userId) => deviceListDeviceStreamId(kv, userId),
    }),
    deviceLists,
    keyBackup,
    toDevice,
    dehydratedDevices: new DehydratedDeviceService({
      accounts,
      deviceKeys,
      inbox: toDeviceStore,
    }),
    search: new RoomEventSearch({
      store: eventStore,
      index: new KvSearchIndex(eventStore.ctx),
      pipeline: readPipeline,
    }),
    spaces: new SpaceService({ store: eventStore, pipeline: readPipeline }),
    federationTransport: options.federationTransport ??
      federationClientFromConfig(config, keyring, new KvWellKnownCache(kv)),
    ...assembleKeyRing({
      kv,
      config,
      keyring,
      // The transport is the one built just above; nothing is fetched before requests flow.
      transport: { request: (request) => deps.federationTransport.request(request) },
      now: options.now,
    }),
    federationSender,
    pduInput,
    transactionReceiver: new TransactionReceiver({
      pduInput,
      answers: new KvInboundTransactionStore(kv),
      store: eventStore,
      edus: eduDispatcher,
    }),
    // A server that reaches us is up: its backoff goes (one KV read when it had none).
    onInboundServerRequest: (origin) => federationSender.noteInboundRequest(origin),
    remoteJoiner,
    remoteQueries,
    // Approvals of cross-signing resets (account page -> m.oauth UIA), kept in KV: any
    // process may serve the page and another the retried upload.
    crossSigningResetApprovals: new CrossSigningResetApprovals(
      new KvCrossSigningResetApprovalStore(kv, options.now),
      options.now,
    ),
    // The pages' browser sessions and parked authorization requests live in KV: the
    // authorization endpoint, the login page and the consent page may be served by three
    // processes.
    browserSessions,
    pendingAuthorizations: new PendingAuthorizations(
      new KvPendingAuthorizationStore(kv, options.now),
      options.now,
    ),
    // Sign-in with an upstream OpenID Connect provider, when TESSERA_OIDC_ISSUER is set.
    ...assembleUpstreamSignIn(kv, config, accounts, accountStore, userData.profiles, options.now),
    // Registered OAuth clients: written once, read from KV on every use (no cache to go stale).
    oauthClients: new OAuthClientRegistry(new KvOAuthClientStore(kv), options.now),
    // Codes, device authorizations and the ID-token key live in KV; sessions are devices.
    oauthGrants: assembleOAuthGrants(kv, config, accounts, options.now, {
      get: (clientId) => deps.oauthClients.get(clientId),
    }),
    openIdTokens: new OpenIdTokenService({
      store: new KvOpenIdTokenStore(kv, options.now),
      serverName: config.serverName,
      accountActive: accountIsActive,
      now: options.now,
    }),
    pushRules: push.pushRules,
    notifications: push.notifications,
    notificationCounts,
    pushers: push.pushers,
    pushSender: push.sender({
      store: eventStore,
      pipeline: readPipeline,
      http: new GuardedFetch({
        allowPrivate: config.outboundAllowPrivate,
        // Test harnesses only, as for identity servers (TESSERA_OUTBOUND_TLS_VERIFY=off).
        ...(config.outboundTlsVerify ? {} : { fetch: unverifiedTlsFetch as typeof fetch }),
      }),
      counts: (userId, roomIds) => notificationCounts.countsFor(userId, roomIds),
      readUpTo: async (userId, roomId, threadId) =>
        (await notificationCounts.readPoints(userId, roomId)).thread(threadId),
    }),
    filters: new FilterService(new KvFilterStore(kv)),
    sentMembers: new KvSentMembersStore(kv),
    stateQuota: new StateQuota(new KvStateUsageReader(kv)),
    ...userData,
    ...assembleRooms({
      kv,
      serverName: config.serverName,
      eventStore,
      sender,
      profiles: userData.profiles,
      isGuest: (userId) => accounts.guests.isGuest(userId),
      copyUserDataOnUpgrade: (userId, oldRoomId, newRoomId) =>
        userData.accountData.copyOnRoomUpgrade(userId, oldRoomId, newRoomId),
      defaultRoomVersion: config.defaultRoomVersion,
      roomDirectory,
      remoteJoin: remoteJoiner,
      remoteMembership,
      federationDisabled: !config.federation.enabled,
    }),
    ...assembleThreepids({ kv, config, keyring, now: options.now, rooms: () => deps.rooms }),
  };
  // Deactivation drops the account's addresses and unbinds them at identity servers (the
  // route does it first to report the result; this finishes what a dead process left).
  accounts.deactivations.hooks.push(async (userId) => {
    await deps.threepids.removeAll(userId);
  });
  // A deactivated user leaves their rooms (first, as Synapse does: their leaves go out before
  // anything else of theirs is dropped).
  accounts.deactivations.hooks.unshift((userId) =>
    partFromAllRooms({ store: eventStore, membership: deps.rooms.membership }, userId)
  );
  // Guests leave a room whose guest access is revoked (the sender runs it per event).
  eventHooks.push(
    new GuestEvictor({
      store: eventStore,
      serverName: config.serverName,
      leave: (userId, roomId) => deps.rooms.membership.leave(userId, roomId),
    }),
  );
  // Erasure clears the profile (after the rooms are left, so no member event repeats it).
  accounts.deactivations.hooks.push(async (userId, { erase }) => {
    if (!erase) return;
    await deps.profiles.deleteField(userId, userId, "displayname");
    await deps.profiles.deleteField(userId, userId, "avatar_url");
  });
  // Simplified sliding sync (MSC4186) over /sync's stores, stream providers and read pipeline.
  const slidingExtensions = extensionProvidersFrom(
    syncStreams,
    (limit) => new ToDeviceStream(toDeviceStore, limit),
  );
  deps.slidingSync = new SlidingSyncService({
    store: eventStore,
    notifier: syncNotifier,
    connections: new KvSlidingConnectionStore(kv),
    roomList: new KvRoomListSource(eventStore.ctx, {
      remoteMemberships,
      accountData: new KvAccountDataStore(kv),
    }),
    rooms: new RoomDataBuilder({
      store: eventStore,
      pipeline: readPipeline,
      notificationCounts,
      remoteMemberships,
    }),
    extensions: (request, ctx) => buildExtensions(request, ctx, slidingExtensions),
    ignoredUsers: (userId) => readPipeline.ignoredUsers(userId),
    presence: deps.presence,
    now: options.now,
  });
  // The spec's freeze of unauthenticated media reads dates from this database's first start.
  await deps.media.freezeLegacy();
  // Other servers' media, fetched over federation on a cache miss and cached by the service.
  deps.media.setRemoteMedia(new FederationRemoteMedia(deps.federationTransport));
  return { app: buildApp(deps), deps, wakeSource };
}

// ---- Push rules and notifications ----
/** The push services, before receipts exist (they are built after the sender). */
interface PushServices {
  pushRules: PushRuleService;
  notifications: KvNotificationStore;
  planner: NotificationPlanner;
  pushers: PusherService;
  /** Counts over these notifications and the receipts service. */
  countsWith(receipts: ReceiptReader): NotificationCountService;
  /** A read receipt moved: queue a badge update for the user's pushers. */
  readReceiptMoved(userId: string): Promise<void>;
  /** The push sender, once the read pipeline and counts exist (main() starts it). */
  sender(deps: Omit<PushDeliveryDeps, "pushers">): OutboxWorker;
}

/** Build the push services and push the `m.push_rules` stream onto `syncStreams`. */
function assemblePush(options: {
  kv: Deno.Kv;
  serverName: string;
  eventStore: EventStore;
  syncNotifier: SyncNotifier;
  syncStreams: SyncStreamProvider[];
  /** Wakes the push sender for pushes other processes queue. */
  wakeSource: WakeSource;
  now?: () => number;
}): PushServices {
  const { kv, eventStore } = options;
  const ruleStore = new KvPushRuleStore(kv);
  const pushRules = new PushRuleService(ruleStore);
  pushRules.onChange((userId) => options.syncNotifier.notifyUser(userId));
  options.syncStreams.push(pushRulesSyncStream(ruleStore, pushRules));
  const notifications = new KvNotificationStore(kv);
  const pushers = new PusherService({ store: new KvPusherStore(kv), now: options.now });
  // Pushes ride in the event's commit (a transactional outbox), one stream per pusher.
  const outbox = new KvOutboxStore(kv, PUSH_STREAM);
  let worker: OutboxWorker | undefined;
  const planner = new NotificationPlanner({
    store: eventStore,
    notifications,
    pushRules,
    serverName: options.serverName,
    push: { pushersOf: (ids) => pushers.forUsers(ids), outbox, wake: () => worker?.wake() },
  });
  return {
    pushRules,
    notifications,
    planner,
    pushers,
    countsWith: (receipts) => new NotificationCountService(notifications, receipts),
    readReceiptMoved: async (userId) => {
      const mine = await pushers.list(userId);
      if (mine.length === 0) return;
      await outbox.append(badgeAppends(userId, mine, (options.now ?? Date.now)()));
      worker?.wake();
    },
    sender: (deps) => {
      const delivery = new PushDelivery({ ...deps, pushers });
      worker = new OutboxWorker({
        store: outbox,
        deliver: (pusherId, entries) => delivery.deliver(pusherId, entries),
        now: options.now,
        wakes: { source: options.wakeSource, topic: { kind: "outbox", stream: PUSH_STREAM } },
      });
      return worker;
    },
  };
}

// ---- User data: profiles, account data, receipts, typing, presence ----
/** The user-data services AppDeps carries. */
interface UserDataServices {
  profiles: ProfileService;
  accountData: AccountDataService;
  receipts: ReceiptService;
  typing: TypingService;
  presence: PresenceService;
}

/** Build the user-data services and push their sync streams onto `syncStreams`. */
function assembleUserData(options: {
  kv: Deno.Kv;
  serverName: string;
  eventStore: EventStore;
  sender: LocalEventSender;
  syncNotifier: SyncNotifier;
  syncStreams: SyncStreamProvider[];
  now?: () => number;
  /** A user's read receipt moved (push gateways get the new badge). */
  readReceiptMoved?: (userId: string) => void;
  /** Remote users' profiles, asked of their servers. */
  remoteProfiles?: ProfileServiceDeps["remote"];
  /** Sends a local user's changed presence to other servers. */
  federatePresence?: PresenceServiceDeps["federate"];
  /** Sends local users' typing to the room's other servers. */
  typingFederation?: TypingFederation;
  /** Sends local users' public read receipts to the room's other servers. */
  receiptFederation?: ReceiptFederation;
}): UserDataServices {
  const { kv, eventStore, syncNotifier, now } = options;
  const notifyUser = (userId: string) => syncNotifier.notifyUser(userId);
  const notifyRoom = (roomId: string) => syncNotifier.notifyRoom(roomId);
  // Presence reaches everyone sharing a room with the user: wake those rooms' syncs.
  const notifyPresence = (userId: string) => {
    syncNotifier.notifyUser(userId);
    eventStore.roomsOfUser(userId, ["join"]).then(
      (rooms) => rooms.forEach((r) => syncNotifier.notifyRoom(r.roomId)),
      (error) => console.warn("presence: wake-up failed", userId, error),
    );
  };

  const accountDataStore = new KvAccountDataStore(kv);
  const receiptStore = new KvReceiptStore(kv);
  const typingStore = new KvTypingStore(kv);
  const presenceStore = new KvPresenceStore(kv);
  const accountData = new AccountDataService({ store: accountDataStore, notifyUser });
  const services: UserDataServices = {
    profiles: new ProfileService({
      store: new KvProfileStore(kv),
      events: eventStore,
      sender: options.sender,
      serverName: options.serverName,
      accounts: new KvAccountStore(kv, now),
      remote: options.remoteProfiles,
    }),
    accountData,
    receipts: new ReceiptService({
      store: receiptStore,
      events: eventStore,
      accountData,
      notifyRoom,
      notifyUser,
      readReceiptMoved: options.readReceiptMoved,
      federation: options.receiptFederation,
      now,
    }),
    typing: new TypingService({
      store: typingStore,
      events: eventStore,
      notifyRoom,
      federation: options.typingFederation,
      now,
    }),
    presence: new PresenceService({
      store: presenceStore,
      events: eventStore,
      notifyPresence,
      federate: options.federatePresence,
      now,
    }),
  };
  options.syncStreams.push(
    new AccountDataStream(accountDataStore),
    new TypingStream(typingStore),
    new ReceiptStream(receiptStore),
    new PresenceStream(presenceStore, eventStore),
  );
  return services;
}

/** The typing and receipt EDU senders the user-data services hand local changes to. */
function ephemeralFederation(
  store: EventStore,
  serverName: string,
  sender: Pick<FederationSender, "sendEdus">,
  now?: () => number,
): { typingFederation: TypingFederation; receiptFederation: ReceiptFederation } {
  return {
    typingFederation: new TypingEduSender({ store, serverName, sender, now }),
    receiptFederation: new ReceiptEduSender({ store, serverName, sender }),
  };
}

// ---- Rooms: creation, membership, aliases, directory, upgrades ----
/** The rooms services AppDeps carries. */
interface RoomsServices {
  rooms: Rooms;
  /** Aliases, published rooms and forgotten rooms (sync reads `isForgotten`). */
  roomDirectory: RoomDirectoryStore;
}

/** Build the rooms services. */
function assembleRooms(options: {
  kv: Deno.Kv;
  serverName: string;
  eventStore: EventStore;
  sender: LocalEventSender;
  profiles?: ProfileReader;
  isGuest?: (userId: string) => Promise<boolean>;
  copyUserDataOnUpgrade?: (userId: string, oldRoomId: string, newRoomId: string) => Promise<void>;
  defaultRoomVersion?: string;
  roomDirectory: RoomDirectoryStore;
  remoteJoin?: RemoteJoinService;
  remoteMembership?: RemoteMembershipActions;
  federationDisabled?: boolean;
}): RoomsServices {
  const { roomDirectory } = options;
  const rooms = new Rooms({
    store: options.eventStore,
    sender: options.sender,
    directory: roomDirectory,
    serverName: options.serverName,
    profile: options.profiles ? (userId) => options.profiles!.profile(userId) : undefined,
    isGuest: options.isGuest,
    copyUserDataOnUpgrade: options.copyUserDataOnUpgrade,
    defaultRoomVersion: options.defaultRoomVersion,
    remoteJoin: options.remoteJoin,
    remoteMembership: options.remoteMembership,
    federationDisabled: options.federationDisabled,
  });
  return { rooms, roomDirectory };
}

// ---- Server keys: the key ring (remote keys cached in KV) and the notary ----------------------
/** Build the key ring and the notary over one KV cache of remote keys. */
function assembleKeyRing(options: {
  kv: Deno.Kv;
  config: Config;
  keyring: ServerKeyring;
  transport: FederationTransport;
  now?: () => number;
}): Pick<AppDeps, "keyRing" | "keyNotary"> {
  const store = new KvServerKeyStore(options.kv);
  const keyRing = new FederationKeyRing({
    own: options.keyring,
    store,
    transport: options.transport,
    notaries: options.config.trustedKeyServers,
    now: options.now,
  });
  const keyNotary = new KeyNotary({
    own: options.keyring,
    store,
    fetchDirect: (serverName) => keyRing.fetchDirect(serverName),
    now: options.now,
  });
  return { keyRing, keyNotary };
}

// ---- Third-party identifiers: email validation, identity servers, third-party invites ----
/** Build the 3PID services; outbound requests to identity servers pass the address guard. */
function assembleThreepids(options: {
  kv: Deno.Kv;
  config: Config;
  keyring: ServerKeyring;
  now?: () => number;
  rooms: () => Rooms;
}): Pick<AppDeps, "threepids" | "thirdPartyInvites"> {
  const { config } = options;
  const identity = new IdentityServerClient(
    new GuardedFetch({
      allowPrivate: config.outboundAllowPrivate,
      // Test harnesses only (SyTest's identity server has a self-signed certificate).
      ...(config.outboundTlsVerify ? {} : { fetch: unverifiedTlsFetch as typeof fetch }),
    }),
    config.serverName,
    options.keyring.current,
  );
  const store = new KvThreepidStore(options.kv, options.now);
  const validation = new ThreepidValidation({
    store,
    mailer: config.smtp ? new SmtpMailer(config.smtp) : undefined,
    publicBaseUrl: clientBaseUrl(config),
    now: options.now,
  });
  return {
    threepids: new ThreepidService({
      store,
      validation,
      identity,
      now: options.now,
    }),
    thirdPartyInvites: new ThirdPartyInvites(identity, options.rooms),
  };
}

const onDenoDeploy = Boolean(Deno.env.get("DENO_DEPLOYMENT_ID"));

async function main(): Promise<void> {
  const dev = Deno.args.includes("--dev");
  let config;
  try {
    config = configFromDenoEnv({ dev, deploy: onDenoDeploy });
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`tessera: ${error.message}`);
      Deno.exit(2);
    }
    throw error;
  }

  const kv = await openKv(config.kvPath);
  // Aborted by the first stop signal: waiting long-polls answer at once (AppDeps.shutdown).
  const shuttingDown = new AbortController();
  let assembled: AssembledServer;
  try {
    assembled = await assembleServer(config, kv, { shutdown: shuttingDown.signal });
  } catch (error) {
    // A configured file that cannot be read (TESSERA_FEDERATION_CA_FILE) is found here.
    if (error instanceof ConfigError) {
      console.error(`tessera: ${error.message}`);
      Deno.exit(2);
    }
    throw error;
  }
  const { app, deps } = assembled;
  // Push notifications queued by this or another process go out from here (each destination
  // under its own lease in KV).
  deps.pushSender.start();
  // Federation transactions queued by this or another process (or before a restart) too.
  deps.federationSender.start();
  // Work a dead process left (deactivations, joins of remote rooms), once per period by one
  // process of the fleet: see domain/jobs/background_jobs.ts.
  const jobs = new LeasedJobRunner({
    store: new KvJobLeaseStore(kv),
    jobs: backgroundJobs({
      deactivations: deps.accounts.deactivations,
      remoteJoins: deps.remoteJoiner,
      typing: deps.typing,
      media: deps.media,
      probe: config.jobs.probe,
    }),
    leaseMs: config.jobs.leaseMs,
  });
  // The name on this process's leases and run log entries (job_state, jobrun_record in KV).
  console.log(`tessera: background jobs run as ${jobs.holder}`);
  jobs.start();

  const tls = config.tls
    ? {
      cert: await Deno.readTextFile(config.tls.certPath),
      key: await Deno.readTextFile(config.tls.keyPath),
    }
    : {};
  const server = Deno.serve(
    {
      port: config.port,
      hostname: config.hostname,
      ...tls,
      onListen: ({ hostname, port }) =>
        console.log(
          `tessera ${config.serverName} listening on ${
            tls.cert ? "https" : "http"
          }://${hostname}:${port}` +
            ` (KV: ${config.kvPath ?? "Deno Deploy"}, registration: ${config.registration})`,
        ),
    },
    app.fetch,
  );

  const stop = async () => {
    if (shuttingDown.signal.aborted) return;
    // Deno Deploy sends SIGINT and kills 5 s later: long-polls held to their timeout would keep
    // server.shutdown() waiting past that, and the leases below would never be given back.
    shuttingDown.abort();
    // The federation sender gives its leases back before KV closes: a restart resumes at once.
    // So do the leased jobs: another process takes a job cut short at once.
    await Promise.all([
      server.shutdown().then(() => deps.rateLimiter.flush()),
      deps.federationSender.stop(),
      deps.pushSender.stop(),
      jobs.stop(),
    ]);
    assembled.wakeSource.close();
    kv.close();
    Deno.exit(0);
  };
  // Deno Deploy (the current one; Classic allowed no listeners) stops an instance with SIGINT.
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
}

if (import.meta.main) await main();
