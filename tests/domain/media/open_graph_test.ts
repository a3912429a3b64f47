import { assert, assertEquals } from "../../assert.ts";
import {
  decodePage,
  MAX_DESCRIPTION_CHARS,
  MAX_OG_PROPERTIES,
  parseOpenGraph,
} from "../../../domain/media/open_graph.ts";

const PAGE = "https://example.com/articles/1";

Deno.test("a page's own og: tags win, entities decoded, relative URLs resolved", () => {
  const og = parseOpenGraph(
    `<!doctype html><html><head>
      <title>Fallback title</title>
      <meta property="og:title" content="Tom &amp; Jerry">
      <META NAME="og:description" CONTENT="A cat &lt;and&gt; a mouse">
      <meta property="og:image" content="/img/cover.png">
      <meta property="og:url" content="//example.com/canonical">
      <meta property="og:type" content="article">
      <meta name="description" content="ignored when og:description exists">
    </head><body><img src="other.png" width="500" height="500"></body></html>`,
    PAGE,
  );
  assertEquals(og, {
    "og:title": "Tom & Jerry",
    "og:description": "A cat <and> a mouse",
    "og:image": "https://example.com/img/cover.png",
    "og:url": "https://example.com/canonical",
    "og:type": "article",
  });
});

Deno.test("without og: tags, title, meta description and the largest image fill in", () => {
  const og = parseOpenGraph(
    `<html><head><title>  The
      Title </title><meta name="description" content="Described."></head>
    <body><img src="pixel.gif" width="1" height="1"><img src="small.jpg" width="100" height="50">
    <img src="big.jpg" width="400" height="300"><img src="unsized.jpg"></body></html>`,
    PAGE,
  );
  assertEquals(og["og:title"], "The Title");
  assertEquals(og["og:description"], "Described.");
  assertEquals(og["og:image"], "https://example.com/articles/big.jpg");
});

Deno.test("fallbacks: first heading, paragraph text (not scripts), first image, then icon", () => {
  const og = parseOpenGraph(
    `<body><h1>Heading <b>one</b></h1><script>var p = "<p>not text</p>";</script>
     <p>First   paragraph.</p><style>p { color: red }</style><p>Second.</p>
     <img src="a.png"><img src="b.png"></body>`,
    PAGE,
  );
  assertEquals(og["og:title"], "Heading one");
  assertEquals(og["og:description"], "First paragraph.\nSecond.");
  assertEquals(og["og:image"], "https://example.com/articles/a.png");
  const iconOnly = parseOpenGraph(`<link rel="shortcut icon" href="/favicon.ico">`, PAGE);
  assertEquals(iconOnly["og:image"], "https://example.com/favicon.ico");
});

Deno.test("markup that fools regular expressions does not fool the parser", () => {
  const og = parseOpenGraph(
    `<!-- <meta property="og:title" content="commented out"> -->
     <script>document.write('<meta property="og:title" content="from script">')</script>
     <meta content='single "quoted"' property=og:title>`,
    PAGE,
  );
  assertEquals(og["og:title"], 'single "quoted"');
});

Deno.test("images with non-http schemes are dropped; values and counts are bounded", () => {
  const og = parseOpenGraph(
    `<meta property="og:image" content="javascript:alert(1)">
     <meta property="og:description" content="${"word ".repeat(1000)}">` +
      Array.from({ length: 80 }, (_, i) => `<meta property="og:x${i}" content="${i}">`).join(""),
    PAGE,
  );
  assertEquals(og["og:image"], undefined);
  assert(og["og:description"].length <= 1000);
  assert(Object.keys(og).length <= MAX_OG_PROPERTIES);
  const long = parseOpenGraph(`<p>${"lorem ipsum ".repeat(200)}</p>`, PAGE);
  assert(long["og:description"].length <= MAX_DESCRIPTION_CHARS);
  assert(long["og:description"].endsWith("…"));
});

Deno.test("pages decode in the charset they declare, in the header or a meta tag", () => {
  const latin1 = new Uint8Array([
    ...new TextEncoder().encode("<title>caf"),
    0xe9,
    ...new TextEncoder().encode("</title>"),
  ]);
  assertEquals(
    parseOpenGraph(decodePage("text/html; charset=ISO-8859-1", latin1), PAGE)["og:title"],
    "café",
  );
  const meta = new Uint8Array([
    ...new TextEncoder().encode('<meta charset="windows-1252"><title>caf'),
    0xe9,
    ...new TextEncoder().encode("</title>"),
  ]);
  assertEquals(parseOpenGraph(decodePage("text/html", meta), PAGE)["og:title"], "café");
  const bogus = new TextEncoder().encode("<title>café</title>");
  assertEquals(
    parseOpenGraph(decodePage("text/html; charset=nonsense", bogus), PAGE)["og:title"],
    "café",
  );
});
