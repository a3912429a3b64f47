/**
 * Tessera's entry point: read the configuration, open KV, assemble the server and serve.
 * Locally it runs on an embedded KV file; on Deno Deploy `Deno.openKv()` takes no path.
 */
import type { Hono } from "hono";
import { type Config, ConfigError, configFromDenoEnv } from "./domain/config.ts";
import { generateSigningSeed } from "./domain/signing.ts";
import { keyringFromSeed } from "./domain/server_keys.ts";
import { type LocalEventHook, LocalEventSender } from "./domain/local_event_sender.ts";
import { assemblePush } from "./push_assembly.ts";
import { SyncNotifier } from "./domain/sync/sync_notifier.ts";
import type { SyncStreamProvider } from "./domain/sync/sync_stream.ts";
import { FilterService } from "./domain/sync/filters.ts";
import { KvFilterStore } from "./kv/filter_store.ts";
import { resolveState } from "./domain/state_res/resolve_state.ts";
import { KvEventStore } from "./kv/kv_event_store.ts";
import { loadOrCreateSigningSeed } from "./kv/server_signing_seed.ts";
import { openKv } from "./kv/open_kv.ts";
import { buildApp } from "./routes/app.ts";
import { AccountService } from "./domain/accounts/account_service.ts";
import { PasswordHasher, type ScryptParams } from "./domain/accounts/password_hash.ts";
import { UserInteractiveAuth } from "./domain/accounts/user_interactive_auth.ts";
import { RateLimiter } from "./domain/rate_limiter.ts";
import { KvAccountStore } from "./kv/account_store.ts";
import type { AppDeps } from "./routes/deps.ts";
import { KvTransactionStore } from "./kv/transaction_store.ts";
import { RoomEventService } from "./domain/room_events/room_event_service.ts";
import { assembleUserData } from "./user_data_assembly.ts";
import { assembleRooms } from "./rooms_assembly.ts";

/** An assembled server: the HTTP app and the services behind it. */
export interface AssembledServer {
  app: Hono;
  deps: AppDeps;
}

/** Wire storage, protocol services and routes together over an open KV database. */
export async function assembleServer(
  config: Config,
  kv: Deno.Kv,
  options: {
    now?: () => number;
    /** scrypt cost; tests pass a low logN to stay fast, servers keep the strong default. */
    passwordHashing?: ScryptParams;
  } = {},
): Promise<AssembledServer> {
  const seed = config.signingKeySeed ?? (await loadOrCreateSigningSeed(kv, generateSigningSeed));
  const keyring = await keyringFromSeed(config.serverName, seed);
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
  const syncNotifier = new SyncNotifier();
  syncNotifier.attach(eventStore);
  // Sync streams other than rooms; each area pushes its provider here.
  const syncStreams: SyncStreamProvider[] = [];
  const push = assemblePush({
    kv,
    serverName: config.serverName,
    eventStore,
    syncNotifier,
    syncStreams,
  });
  eventHooks.push(push.planner);
  const userData = assembleUserData({
    kv,
    serverName: config.serverName,
    eventStore,
    sender,
    syncNotifier,
    syncStreams,
    now: options.now,
  });
  const accountStore = new KvAccountStore(kv, options.now);
  const accounts = new AccountService({
    store: accountStore,
    serverName: config.serverName,
    hasher: new PasswordHasher(options.passwordHashing),
    now: options.now,
  });
  const transactions = new KvTransactionStore(kv);
  const deps: AppDeps = {
    config,
    keyring,
    sessions: accounts,
    accounts,
    uia: new UserInteractiveAuth(accountStore, options.now),
    rateLimiter: new RateLimiter(undefined, options.now),
    now: options.now,
    storageHealthy: async () => {
      await kv.get(["health"]);
      return true;
    },
    eventStore,
    sender,
    transactions,
    roomEvents: new RoomEventService({ store: eventStore, sender, transactions, now: options.now }),
    syncNotifier,
    syncStreams,
    pushRules: push.pushRules,
    notifications: push.notifications,
    notificationCounts: push.countsWith(userData.receipts),
    filters: new FilterService(new KvFilterStore(kv)),
    ...assembleRooms({ kv, serverName: config.serverName, eventStore, sender }),
    ...userData,
  };
  return { app: buildApp(deps), deps };
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
  const { app } = await assembleServer(config, kv);

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
    await server.shutdown();
    kv.close();
    Deno.exit(0);
  };
  if (!onDenoDeploy) {
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  }
  await server.finished;
}

if (import.meta.main) await main();
