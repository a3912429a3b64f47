/**
 * A raw TLS server on loopback for the outbound HTTPS tests that need answers no HTTP server
 * library would write (malformed heads, cut bodies, slow pieces).
 */

/** A TLS server running `reply` on each connection, then closing it; `target` reaches it. */
export function rawTlsServer(
  leaf: { certPem: string; keyPem: string },
  reply: (conn: Deno.Conn) => Promise<void>,
) {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: leaf.certPem,
    key: leaf.keyPem,
  });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      reply(conn).catch(() => {}).finally(() => {
        try {
          conn.close();
        } catch { /* closed */ }
      });
    }
  })();
  return {
    target: {
      address: "127.0.0.1",
      port: (listener.addr as Deno.NetAddr).port,
      tlsName: "localhost",
      hostHeader: "localhost",
    },
    async stop() {
      listener.close();
      await serving.catch(() => {});
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    },
  };
}
