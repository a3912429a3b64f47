/**
 * `localPath`, the guard on every `next=`: only paths on this server pass, whatever a browser
 * would make of the rest (scheme-relative URLs, backslashes, control characters, schemes).
 */
import { assertEquals } from "../../assert.ts";
import { localPath } from "../../../routes/oauth/browser_session.ts";

Deno.test("localPath: local paths pass, everything that could leave the server does not", () => {
  const accepted: [string, string][] = [
    ["/account", "/account"],
    ["/account/consent/abc?x=1", "/account/consent/abc?x=1"],
    ["/account/link?code=AB%20CD", "/account/link?code=AB%20CD"],
    ["/a/../b", "/b"],
    ["/%2F%2Fevil.example", "/%2F%2Fevil.example"],
    ["/account#frag", "/account"],
  ];
  for (const [input, expected] of accepted) assertEquals(localPath(input), expected, input);

  const refused = [
    undefined,
    null,
    "",
    "account",
    "//evil.example",
    "//evil.example/path",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "data:text/html,hi",
    " /account",
    "/" + "a".repeat(3000),
  ];
  for (const input of refused) assertEquals(localPath(input), undefined, String(input));
});
