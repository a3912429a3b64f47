import { assert, assertEquals } from "../assert.ts";
import { GuardedPreviewFetcher } from "../../outbound/url_preview_fetcher.ts";
import { OutboundError } from "../../domain/ports/outbound_http.ts";

/** A local server answering by path; records every path requested. */
function localServer(handler: (url: URL) => Response | Promise<Response>) {
  const hits: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    hits.push(url.pathname);
    return handler(url);
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  return { server, base, hits };
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (e) {
    assert(e instanceof OutboundError, String(e));
    return e.failure;
  }
  throw new Error("expected the fetch to fail");
}

/** A fetch that must never be called: the guard refuses before any connection. */
const noFetch: typeof fetch = () => {
  throw new Error("fetch called for a refused address");
};

Deno.test("preview fetcher follows redirects to the final page (private allowed for tests)", async () => {
  const { server, base, hits } = localServer((url) => {
    if (url.pathname === "/a") return Response.redirect(`${base}/b`, 302);
    if (url.pathname === "/b") {
      return new Response(null, { status: 301, headers: { location: "/c" } });
    }
    return new Response("<html>hi</html>", { headers: { "content-type": "text/html" } });
  });
  try {
    const fetcher = new GuardedPreviewFetcher({ allowPrivate: true });
    const got = await fetcher.get(`${base}/a`);
    assertEquals(got.status, 200);
    assertEquals(got.url, `${base}/c`);
    assertEquals(got.contentType, "text/html");
    assertEquals(new TextDecoder().decode(got.body), "<html>hi</html>");
    assertEquals(hits, ["/a", "/b", "/c"]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("preview fetcher refuses private, loopback and link-local destinations", async () => {
  const resolve = (host: string) =>
    Promise.resolve(
      host === "intranet.example" ? ["10.1.2.3"] : host === "v6.example" ? ["fd00::1"] : [],
    );
  const fetcher = new GuardedPreviewFetcher({ allowPrivate: false, resolve, fetch: noFetch });
  for (
    const url of [
      "http://127.0.0.1/",
      "http://127.1.2.3:8008/x",
      "http://[::1]/",
      "http://[::ffff:127.0.0.1]/",
      "http://10.0.0.1/",
      "http://192.168.1.1/",
      "http://169.254.169.254/latest/meta-data/",
      "http://0.0.0.0/",
      "http://localhost:8008/",
      "http://sub.localhost/",
      "http://intranet.example/",
      "https://v6.example/",
    ]
  ) {
    assertEquals(await failure(fetcher.get(url)), "refused", url);
  }
  assertEquals(await failure(fetcher.get("http://nowhere.example/")), "unresolved");
});

Deno.test("preview fetcher refuses every scheme but http and https, and credentials", async () => {
  const fetcher = new GuardedPreviewFetcher({ allowPrivate: true, fetch: noFetch });
  for (
    const url of [
      "file:///etc/passwd",
      "ftp://example.com/",
      "data:text/html,<title>x</title>",
      "javascript:alert(1)",
      "gopher://127.0.0.1:6379/_INFO",
      "http://user:secret@example.com/",
      "not a url",
    ]
  ) {
    assertEquals(await failure(fetcher.get(url)), "refused", url);
  }
});

Deno.test("a public-looking host that redirects to a private address is refused at that hop", async () => {
  for (
    const target of ["http://127.0.0.1:1/secret", "http://169.254.169.254/", "file:///etc/passwd"]
  ) {
    const { server, base, hits } = localServer((url) =>
      url.pathname === "/go"
        ? new Response(null, { status: 307, headers: { location: target } })
        : new Response("secret")
    );
    try {
      // public.example "resolves" to a public address; the test's fetch carries it to the
      // local server, so only the redirect's target meets the guard as private.
      const fetchPublic: typeof fetch = (input, init) => {
        const url = new URL(input instanceof Request ? input.url : String(input));
        if (url.hostname !== "93.184.216.34") throw new Error(`fetch reached ${url.href}`);
        return fetch(`${base}${url.pathname}`, { signal: init?.signal, redirect: "manual" });
      };
      const fetcher = new GuardedPreviewFetcher({
        allowPrivate: false,
        resolve: () => Promise.resolve(["93.184.216.34"]),
        fetch: fetchPublic,
      });
      assertEquals(await failure(fetcher.get("http://public.example/go")), "refused", target);
      assertEquals(hits, ["/go"]);
    } finally {
      await server.shutdown();
    }
  }
});

Deno.test("preview fetcher stops after 5 redirects", async () => {
  const { server, base, hits } = localServer((url) =>
    Response.redirect(`${base}/${Number(url.pathname.slice(1)) + 1}`, 302)
  );
  try {
    const fetcher = new GuardedPreviewFetcher({ allowPrivate: true });
    assertEquals(await failure(fetcher.get(`${base}/0`)), "refused");
    assertEquals(hits.length, 6);
  } finally {
    await server.shutdown();
  }
});

Deno.test("preview fetcher refuses bodies over the size bound, declared or streamed", async () => {
  const { server, base } = localServer((url) => {
    if (url.pathname === "/declared") return new Response("x".repeat(2000));
    // No Content-Length: the bound is met while counting the stream.
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(512));
      },
    });
    return new Response(stream);
  });
  try {
    const fetcher = new GuardedPreviewFetcher({ allowPrivate: true, maxBytes: 1000 });
    assertEquals(await failure(fetcher.get(`${base}/declared`)), "too_large");
    assertEquals(await failure(fetcher.get(`${base}/endless`)), "too_large");
    const small = new GuardedPreviewFetcher({ allowPrivate: true, maxBytes: 2000 });
    assertEquals((await small.get(`${base}/declared`)).body.length, 2000);
  } finally {
    await server.shutdown();
  }
});

Deno.test("preview fetcher gives up on a page that never finishes", async () => {
  let stalled: ReadableStreamDefaultController<Uint8Array> | undefined;
  const { server, base } = localServer(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          stalled = controller;
          controller.enqueue(new TextEncoder().encode("<html><title>slow"));
        },
      }),
      { headers: { "content-type": "text/html" } },
    )
  );
  try {
    const fetcher = new GuardedPreviewFetcher({ allowPrivate: true, timeoutMs: 300 });
    assertEquals(await failure(fetcher.get(`${base}/slow`)), "timeout");
    assert(stalled !== undefined);
  } finally {
    try {
      stalled?.close();
    } catch {
      // already cancelled by the aborted request
    }
    await server.shutdown();
  }
});

Deno.test("a plain-http hop connects to the address checked, naming the host in Host", async () => {
  // A rebinding name would answer differently to a second lookup: there must not be one.
  let lookups = 0;
  const resolve = () => Promise.resolve(lookups++ === 0 ? ["93.184.216.34"] : ["127.0.0.1"]);
  const seen: Array<[string, string | null]> = [];
  const recording: typeof fetch = (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    seen.push([url, new Headers(init?.headers).get("host")]);
    return Promise.resolve(new Response("<title>ok</title>"));
  };
  const fetcher = new GuardedPreviewFetcher({ allowPrivate: false, resolve, fetch: recording });
  const got = await fetcher.get("http://rebind.example:8080/page?x=1");
  assertEquals(seen, [["http://93.184.216.34:8080/page?x=1", "rebind.example:8080"]]);
  assertEquals(got.url, "http://rebind.example:8080/page?x=1");
  assertEquals(lookups, 1);
});
