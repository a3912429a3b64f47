/**
 * A fetch for test harnesses only (`TESSERA_OUTBOUND_TLS_VERIFY=off`): HTTPS without checking
 * the server's certificate, as Synapse's use_insecure_ssl_client_just_for_testing_do_not_use.
 * SyTest's identity server presents a self-signed certificate with no subject alternative name,
 * which Deno's fetch refuses whatever CA it is given, and Deno has no per-client switch to skip
 * verification; node:https has one. Plain http: URLs go through the normal fetch. The address
 * guard still runs before this (GuardedFetch calls it after checkDestination).
 */

/**
 * fetch(url, init) over node:https with certificate checks off; no redirects are followed.
 * node:https is loaded on the first call: it costs about 11 MiB, which servers that verify
 * certificates (all but test harnesses) should not pay.
 */
export async function unverifiedTlsFetch(
  input: URL | string,
  init: RequestInit = {},
): Promise<Response> {
  const url = new URL(String(input));
  if (url.protocol !== "https:") return fetch(url, init);
  const { default: https } = await import("node:https");
  const headers = new Headers(init.headers);
  const body = typeof init.body === "string" ? new TextEncoder().encode(init.body) : undefined;
  if (body !== undefined) headers.set("content-length", String(body.byteLength));
  return await new Promise<Response>((resolve, reject) => {
    const request = https.request(
      {
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: url.port === "" ? 443 : Number(url.port),
        path: url.pathname + url.search,
        method: init.method ?? "GET",
        headers: Object.fromEntries(headers),
        rejectUnauthorized: false,
      },
      (response) => {
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            response.on("data", (chunk: Uint8Array) => controller.enqueue(new Uint8Array(chunk)));
            response.on("end", () => controller.close());
            response.on("error", (error: Error) => controller.error(error));
          },
          cancel() {
            response.destroy();
          },
        });
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(response.headers)) {
          if (typeof value === "string") responseHeaders.set(name, value);
          else if (Array.isArray(value)) { for (const v of value) responseHeaders.append(name, v); }
        }
        const status = response.statusCode ?? 502;
        // A Response for these statuses may not have a body at all.
        const empty = [101, 204, 205, 304].includes(status);
        if (empty) response.resume();
        resolve(new Response(empty ? null : stream, { status, headers: responseHeaders }));
      },
    );
    request.on("error", reject);
    init.signal?.addEventListener("abort", () => request.destroy(new Error("aborted")));
    if (body !== undefined) request.write(body);
    request.end();
  });
}
