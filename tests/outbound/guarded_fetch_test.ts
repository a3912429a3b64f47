import { assert, assertEquals } from "../assert.ts";
import {
  classifyAddress,
  GuardedFetch,
  parseIpv4,
  parseIpv6,
} from "../../outbound/guarded_fetch.ts";
import { OutboundError } from "../../domain/ports/outbound_http.ts";

Deno.test("IPv4 addresses are classified by the special-purpose ranges", () => {
  const cases: Array<[string, string]> = [
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["10.0.0.1", "private"],
    ["10.255.255.255", "private"],
    ["100.64.0.1", "shared"],
    ["100.128.0.1", "public"],
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["169.254.169.254", "link_local"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", "public"],
    ["172.15.255.255", "public"],
    ["192.168.1.1", "private"],
    ["192.0.2.7", "documentation"],
    ["198.18.0.1", "reserved"],
    ["198.19.255.255", "reserved"],
    ["198.20.0.1", "public"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "broadcast"],
    ["8.8.8.8", "public"],
    ["1.1.1.1", "public"],
  ];
  for (const [ip, expected] of cases) assertEquals(classifyAddress(ip), expected, ip);
});

Deno.test("IPv6 addresses are classified, including forms that carry IPv4", () => {
  const cases: Array<[string, string]> = [
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["0:0:0:0:0:0:0:1", "loopback"],
    ["fe80::1", "link_local"],
    ["fe80::1%eth0", "link_local"],
    ["febf::1", "link_local"],
    ["fec0::1", "site_local"],
    ["fc00::1", "unique_local"],
    ["fd12:3456:789a::1", "unique_local"],
    ["ff02::1", "multicast"],
    ["2001:db8::1", "documentation"],
    ["100::1", "reserved"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:10.1.2.3", "private"],
    ["::ffff:8.8.8.8", "public"],
    ["::127.0.0.1", "loopback"],
    ["64:ff9b::192.168.0.1", "private"],
    ["64:ff9b::8.8.8.8", "public"],
    ["2002:7f00:1::", "loopback"],
    ["2002:808:808::1", "public"],
    ["2606:4700:4700::1111", "public"],
    ["2a00:1450:4001:80b::200e", "public"],
  ];
  for (const [ip, expected] of cases) assertEquals(classifyAddress(ip), expected, ip);
});

Deno.test("malformed addresses are not IPs", () => {
  for (const text of ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "example.org"]) {
    assertEquals(parseIpv4(text), null, text);
  }
  for (const text of [":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "g::1", "1.2.3.4::"]) {
    assertEquals(parseIpv6(text), null, text);
  }
  assertEquals(classifyAddress("example.org"), null);
  assertEquals(parseIpv6("1:2:3:4:5:6:7:8")?.[15], 8);
});

async function refusal(guard: GuardedFetch, url: string): Promise<OutboundError> {
  try {
    await guard.request(url, { method: "GET" });
  } catch (e) {
    assert(e instanceof OutboundError, String(e));
    return e;
  }
  throw new Error(`expected ${url} to be refused`);
}

Deno.test("private destinations are refused before any connection", async () => {
  let fetched = 0;
  const guard = new GuardedFetch({
    allowPrivate: false,
    resolve: (host) =>
      Promise.resolve(
        host === "inside.example"
          ? ["93.184.215.14", "10.0.0.5"]
          : host === "none.example"
          ? []
          : ["93.184.215.14"],
      ),
    fetch: () => {
      fetched++;
      return Promise.resolve(new Response("{}"));
    },
  });
  for (
    const url of [
      "http://127.0.0.1:8080/",
      "http://[::1]/",
      "http://[::ffff:169.254.169.254]/",
      "http://0x7f.1/", // the URL parser normalises this to 127.0.0.1
      "http://localhost:9/",
      "http://a.localhost/",
      "https://inside.example/", // one of its addresses is private
    ]
  ) {
    assertEquals((await refusal(guard, url)).failure, "refused", url);
  }
  assertEquals((await refusal(guard, "ftp://outside.example/")).failure, "refused");
  assertEquals((await refusal(guard, "http://none.example/")).failure, "unresolved");
  assertEquals(fetched, 0);
  const ok = await guard.request("https://outside.example/x", { method: "GET" });
  assertEquals([ok.status, ok.text, fetched], [200, "{}", 1]);
});

Deno.test("a loopback server answers when private addresses are allowed", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/big") return new Response("x".repeat(2048));
    if (url.pathname === "/redirect") {
      return new Response(null, { status: 302, headers: { location: "http://127.0.0.1/" } });
    }
    if (url.pathname === "/stall") {
      // Headers now, a body never: the whole-request timeout must still end the request.
      return new Response(new ReadableStream({ start() {} }));
    }
    return Response.json({ echo: await req.json() });
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const refusing = new GuardedFetch({ allowPrivate: false });
    assertEquals((await refusal(refusing, `${base}/`)).failure, "refused");

    const guard = new GuardedFetch({ allowPrivate: true, maxResponseBytes: 1024, timeoutMs: 200 });
    const echoed = await guard.request(`${base}/`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ a: 1 }),
    });
    assertEquals([echoed.status, JSON.parse(echoed.text)], [200, { echo: { a: 1 } }]);
    assertEquals((await refusal(guard, `${base}/big`)).failure, "too_large");
    assertEquals((await guard.request(`${base}/redirect`, { method: "GET" })).status, 302);
    assertEquals((await refusal(guard, `${base}/stall`)).failure, "timeout");
  } finally {
    await server.shutdown();
  }
});
