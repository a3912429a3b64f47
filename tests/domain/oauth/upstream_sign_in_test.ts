/**
 * UpstreamSignIn's linking rules where the real provider cannot force the timing: two first
 * sign-ins of one subject that reach the link at the same moment (the provider port is held
 * until both callbacks arrived), and flows that expired. The flows and links are in a real
 * `:memory:` KV store; the provider itself is tested for real in
 * tests/routes/oauth/upstream_oidc_test.ts.
 */
import { assert, assertEquals, assertRejects } from "../../assert.ts";
import { MatrixError } from "../../../domain/errors.ts";
import {
  type UpstreamAccounts,
  UpstreamSignIn,
  UpstreamSignInError,
} from "../../../domain/oauth/upstream_sign_in.ts";
import type { UpstreamIdentity, UpstreamOidc } from "../../../domain/ports/upstream_oidc.ts";
import { KvUpstreamSignInStore } from "../../../kv/upstream_sign_in_store.ts";

/** Accounts in a map: created, discarded (deactivated) and their first profiles. */
function accountsInMemory() {
  const accounts = new Map<string, "active" | "deactivated">();
  const profiles = new Map<string, string | undefined>();
  let random = 0;
  const port: UpstreamAccounts = {
    serverName: "example.org",
    status: (userId) => Promise.resolve(accounts.get(userId) ?? "absent"),
    create: (localpart) => {
      const userId = `@${localpart ?? `random${++random}`}:example.org`;
      if (accounts.has(userId)) {
        return Promise.reject(new MatrixError("M_USER_IN_USE", 400, "taken"));
      }
      accounts.set(userId, "active");
      return Promise.resolve(userId);
    },
    initialiseProfile: (userId, displayName) => {
      profiles.set(userId, displayName);
      return Promise.resolve();
    },
    discard: (userId) => {
      accounts.set(userId, "deactivated");
      return Promise.resolve();
    },
  };
  return { port, accounts, profiles };
}

/** A provider port that answers every completion only once `waitFor` of them are waiting. */
function heldProvider(identity: UpstreamIdentity, waitFor: number): UpstreamOidc {
  let waiting = 0;
  let release!: () => void;
  const allThere = new Promise<void>((resolve) => release = resolve);
  let n = 0;
  return {
    beginAuthorization: (redirectUri) => {
      n++;
      return Promise.resolve({
        url: `https://idp.example/auth?redirect_uri=${redirectUri}&n=${n}`,
        state: `state-${n}`,
        nonce: `nonce-${n}`,
        codeVerifier: `verifier-${n}`,
      });
    },
    completeAuthorization: async () => {
      if (++waiting === waitFor) release();
      await allThere;
      return identity;
    },
  };
}

const OPTIONS = {
  providerId: "oidc",
  localpartClaim: "preferred_username",
  displayNameClaim: "name",
  callbackUrl: "https://hs.example/upstream/oidc/callback",
};

Deno.test("two first sign-ins of one subject racing: one account, with the claim's localpart", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const accounts = accountsInMemory();
    const signIn = new UpstreamSignIn({
      provider: heldProvider({
        issuer: "https://idp.example",
        subject: "s-1",
        claims: { preferred_username: "Erin", name: "Erin E." },
      }, 2),
      store: new KvUpstreamSignInStore(kv),
      accounts: accounts.port,
      options: OPTIONS,
    });
    const first = await signIn.begin("/a");
    const second = await signIn.begin("/b");
    const [a, b] = await Promise.all([
      signIn.complete(new URLSearchParams({ state: "state-1", code: "c" }), first.binding),
      signIn.complete(new URLSearchParams({ state: "state-2", code: "c" }), second.binding),
    ]);
    assertEquals(a.userId, "@erin:example.org");
    assertEquals(b.userId, a.userId);
    assertEquals([a.next, b.next], ["/a", "/b"]);
    // The sign-in without the provisioning claim waited for the link instead of creating a
    // second account.
    assertEquals([...accounts.accounts.entries()], [["@erin:example.org", "active"]]);
    assertEquals([a.provisioned, b.provisioned].filter(Boolean).length, 1);
    assertEquals(accounts.profiles.get(a.userId), "Erin E.");
  } finally {
    kv.close();
  }
});

Deno.test("a claim left by a sign-in that crashed lapses; a live one keeps others out", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    let now = 1_000_000;
    const store = new KvUpstreamSignInStore(kv, () => now);
    const accounts = accountsInMemory();
    const signIn = new UpstreamSignIn({
      provider: heldProvider({
        issuer: "https://idp.example",
        subject: "s-4",
        claims: { preferred_username: "frank" },
      }, 1),
      store,
      accounts: accounts.port,
      options: OPTIONS,
      now: () => now,
    });
    // A process claimed the subject and died before linking.
    assert(await store.claimProvisioning("https://idp.example", "s-4", "crashed", now + 30_000));
    assertEquals(
      await store.claimProvisioning("https://idp.example", "s-4", "other", now + 30_000),
      false,
    );
    now += 30_001;
    const started = await signIn.begin("/x");
    const done = await signIn.complete(new URLSearchParams({ state: "state-1" }), started.binding);
    assertEquals([done.userId, done.provisioned], ["@frank:example.org", true]);
    // The claim went with the sign-in: the next holder gets it at once.
    assert(await store.claimProvisioning("https://idp.example", "s-4", "next", now + 30_000));
    // The crashed holder's late release leaves the new holder's claim alone.
    await store.releaseProvisioning("https://idp.example", "s-4", "crashed");
    assertEquals(
      await store.claimProvisioning("https://idp.example", "s-4", "other", now + 30_000),
      false,
    );
  } finally {
    kv.close();
  }
});

Deno.test("an expired flow is refused even while KV still holds it", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    let now = 1_000_000;
    const signIn = new UpstreamSignIn({
      provider: heldProvider({ issuer: "https://idp.example", subject: "s-2", claims: {} }, 1),
      store: new KvUpstreamSignInStore(kv, () => now),
      accounts: accountsInMemory().port,
      options: OPTIONS,
      now: () => now,
    });
    const started = await signIn.begin("/x");
    now += 10 * 60_000;
    await assertRejects(
      () => signIn.complete(new URLSearchParams({ state: "state-1" }), started.binding),
      /expired/,
    );
  } finally {
    kv.close();
  }
});

Deno.test("no usable localpart claim: a random one; the display name is optional", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const accounts = accountsInMemory();
    const signIn = new UpstreamSignIn({
      provider: heldProvider({
        issuer: "https://idp.example",
        subject: "s-3",
        claims: { preferred_username: "名前" },
      }, 1),
      store: new KvUpstreamSignInStore(kv),
      accounts: accounts.port,
      options: OPTIONS,
    });
    const started = await signIn.begin("/x");
    const done = await signIn.complete(new URLSearchParams({ state: "state-1" }), started.binding);
    assertEquals(done.userId, "@random1:example.org");
    assert(accounts.profiles.has(done.userId));
    assertEquals(accounts.profiles.get(done.userId), undefined);
    // A subject longer than OpenID Connect allows is refused.
    const long = new UpstreamSignIn({
      provider: heldProvider({
        issuer: "https://idp.example",
        subject: "s".repeat(256),
        claims: {},
      }, 1),
      store: new KvUpstreamSignInStore(kv),
      accounts: accounts.port,
      options: OPTIONS,
    });
    const s = await long.begin("/x");
    const error = await long.complete(new URLSearchParams({ state: "state-1" }), s.binding).catch((
      e,
    ) => e);
    assert(error instanceof UpstreamSignInError && error.failure === "provider");
  } finally {
    kv.close();
  }
});
