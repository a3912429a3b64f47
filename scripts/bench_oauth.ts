/**
 * OAuth 2.0 grant costs against a real server process (main.ts on a KV file, over HTTP):
 *
 * - a whole authorization code grant for a browser already signed in: the authorization
 *   endpoint, the consent page, its Allow form, and the code exchange at the token endpoint
 *   (4 requests; the password sign-in happens once, before, since its scrypt hash alone costs
 *   about 300 ms and is measured by `deno task bench:core`);
 * - an OAuth refresh (rotation, with the spent token's reuse record) against the legacy
 *   `/v3/refresh` of a password login, the same device-token swap without that record;
 * - revocation (which ends the session: the device is deleted).
 *
 * `deno task bench:oauth [--grants=N] [--refreshes=N] [--runs=N]` prints p50/p99 per
 * measurement, medians of the runs' figures, and the refresh ratio.
 */
import { parseArgs } from "node:util";
import { OAUTH_ENDPOINTS, OAUTH_PAGES } from "../domain/oauth/oauth_paths.ts";
import {
  Browser,
  formTo,
  passwordSignIn,
  redirectParams,
} from "../tests/routes/oauth/browser_flow.ts";
import { pkcePair } from "../tests/routes/oauth/oauth_client_fixture.ts";
import { BenchClient } from "./bench_client_api.ts";
import { freePort, startServer } from "./bench_client_server.ts";
import { formatFigure, percentile } from "./bench_client_report.ts";

const REDIRECT_URI = "http://127.0.0.1/callback";
const PASSWORD = "correct horse battery staple";

/** One run's figures, in milliseconds. */
interface RunFigures {
  grant: number[];
  oauthRefresh: number[];
  legacyRefresh: number[];
  revoke: number[];
}

async function timed<T>(samples: number[], work: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const result = await work();
  samples.push(performance.now() - start);
  return result;
}

async function postJson(base: string, path: string, body: unknown): Promise<Response> {
  return await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function postForm(base: string, path: string, fields: Record<string, string>) {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function registerClient(base: string): Promise<string> {
  const res = await postJson(base, OAUTH_ENDPOINTS.registration, {
    client_name: "bench",
    client_uri: "https://bench.example.org/",
    application_type: "native",
    redirect_uris: [REDIRECT_URI],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  });
  if (res.status !== 201) throw new Error(`client registration: ${res.status} ${await res.text()}`);
  return (await res.json()).client_id;
}

/** One whole grant for a signed-in browser; the token response. */
async function grant(base: string, browser: Browser, clientId: string, deviceId: string) {
  const { verifier, challenge } = pkcePair();
  const url = new URL(`${base}${OAUTH_ENDPOINTS.authorization}`);
  url.search = new URLSearchParams({
    response_type: "code",
    response_mode: "query",
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    scope: `urn:matrix:client:api:* urn:matrix:client:device:${deviceId}`,
    state: deviceId,
    code_challenge_method: "S256",
    code_challenge: challenge,
  }).toString();
  const consent = await browser.open(url.href);
  const back = await browser.submit(formTo(consent, OAUTH_PAGES.consent), {}, "allow");
  const code = redirectParams(back.location ?? "").get("code");
  if (!code) throw new Error(`no code: ${back.status} ${back.location}`);
  return await postForm(base, OAUTH_ENDPOINTS.token, {
    grant_type: "authorization_code",
    code,
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    code_verifier: verifier,
  });
}

async function run(grants: number, refreshes: number): Promise<RunFigures> {
  const dir = await Deno.makeTempDir({ prefix: "tessera-bench-oauth-" });
  const port = freePort();
  const server = await startServer({ dir, port });
  const base = server.base;
  const figures: RunFigures = { grant: [], oauthRefresh: [], legacyRefresh: [], revoke: [] };
  try {
    await BenchClient.register(base, "alice", undefined, PASSWORD);
    const clientId = await registerClient(base);
    const browser = new Browser(fetch, { origin: base });
    const signedIn = await passwordSignIn(browser, "alice", PASSWORD, OAUTH_PAGES.account);
    if (signedIn.status !== 303 && signedIn.status !== 302) {
      throw new Error(`sign-in: ${signedIn.status}`);
    }

    const sessions: { access: string; refresh: string }[] = [];
    for (let i = 0; i < grants; i++) {
      const tokens = await timed(figures.grant, () => grant(base, browser, clientId, `BENCH${i}`));
      sessions.push({ access: tokens.access_token, refresh: tokens.refresh_token });
    }

    let refresh = sessions[0].refresh;
    for (let i = 0; i < refreshes; i++) {
      const tokens = await timed(figures.oauthRefresh, () =>
        postForm(base, OAUTH_ENDPOINTS.token, {
          grant_type: "refresh_token",
          refresh_token: refresh,
          client_id: clientId,
        }));
      refresh = tokens.refresh_token;
    }

    const login = await postJson(base, "/_matrix/client/v3/login", {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: "alice" },
      password: PASSWORD,
      refresh_token: true,
    });
    let legacy = (await login.json()).refresh_token as string;
    for (let i = 0; i < refreshes; i++) {
      const res = await timed(
        figures.legacyRefresh,
        () => postJson(base, "/_matrix/client/v3/refresh", { refresh_token: legacy }),
      );
      if (!res.ok) throw new Error(`legacy refresh: ${res.status} ${await res.text()}`);
      legacy = (await res.json()).refresh_token;
    }

    for (const session of sessions.slice(1)) {
      await timed(figures.revoke, () =>
        fetch(`${base}${OAUTH_ENDPOINTS.revocation}`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ token: session.access, client_id: clientId }),
        }).then(async (res) => {
          await res.body?.cancel();
          if (!res.ok) throw new Error(`revoke: ${res.status}`);
        }));
    }
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
  return figures;
}

function median(values: number[]): number {
  return percentile(values, 50);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      grants: { type: "string", default: "100" },
      refreshes: { type: "string", default: "200" },
      runs: { type: "string", default: "3" },
    },
  });
  const grants = Number(values.grants);
  const refreshes = Number(values.refreshes);
  const runs = Number(values.runs);
  const perRun: Record<keyof RunFigures, { p50: number; p99: number }[]> = {
    grant: [],
    oauthRefresh: [],
    legacyRefresh: [],
    revoke: [],
  };
  for (let r = 0; r < runs; r++) {
    const figures = await run(grants, refreshes);
    for (const key of Object.keys(perRun) as (keyof RunFigures)[]) {
      perRun[key].push({ p50: percentile(figures[key], 50), p99: percentile(figures[key], 99) });
    }
  }
  const row = (label: string, key: keyof RunFigures, n: number) => {
    const p50 = median(perRun[key].map((f) => f.p50));
    const p99 = median(perRun[key].map((f) => f.p99));
    console.log(
      `${label.padEnd(52)} p50 ${formatFigure(p50)} ms  p99 ${formatFigure(p99)} ms  (n=${n})`,
    );
    return p50;
  };
  console.log(`OAuth grants, medians of ${runs} runs (server process, KV file, loopback HTTP)`);
  row("authorization code grant (authorize, consent, token)", "grant", grants);
  const oauth = row("refresh_token grant (rotation + reuse record)", "oauthRefresh", refreshes);
  const legacy = row("legacy /v3/refresh", "legacyRefresh", refreshes);
  row("revocation (ends the session)", "revoke", grants - 1);
  console.log(`OAuth refresh / legacy refresh: ${formatFigure(oauth / legacy)}x`);
}

if (import.meta.main) await main();
