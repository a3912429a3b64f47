/**
 * What full-text search indexes and how text becomes terms. The same function turns an event's
 * text and a search query into terms, so they always meet:
 *
 * - words are cut with `Intl.Segmenter` (Unicode word boundaries, dictionary-based for Chinese,
 *   Japanese and Thai, which have no spaces), keeping word-like segments only;
 * - each word is normalised (NFKC, so full-width and compatibility forms meet their plain ones),
 *   lower-cased with Unicode's full mapping, and stripped of the combining accents of Latin,
 *   Greek and Cyrillic (U+0300-U+036F), so "Café" finds "cafe" (marks of other scripts, such as
 *   Devanagari's vowel signs, carry meaning and stay);
 * - a word of ASCII letters only is reduced to its Porter stem (`stemmer`, as Postgres' english
 *   configuration does for Synapse), so "messages" finds "message";
 * - the 33 English stop words of Lucene's classic set ("the", "and", "to", ...) are left out,
 *   as Postgres' english configuration leaves out its own: they are in most messages, so they
 *   would cost a KV write per message while narrowing no search (a query of stop words alone
 *   finds nothing, as on Synapse with Postgres).
 *
 * The spec's keys are `content.body`, `content.name` and `content.topic`; Synapse indexes each
 * for one event type only (m.room.message, m.room.name, m.room.topic), and so do we.
 */
import { stemmer } from "stemmer";
import { isJsonObject, type JsonObject } from "../protocol/json.ts";

/** The keys a search may name, in the spec's order; the index stores a key's index here. */
export const SEARCH_KEYS = ["content.body", "content.name", "content.topic"] as const;

/** One of the spec's search keys. */
export type SearchKey = typeof SEARCH_KEYS[number];

/** The event type whose key is indexed, per key. */
const INDEXED_TYPES: Record<string, { key: SearchKey; field: string }> = {
  "m.room.message": { key: "content.body", field: "body" },
  "m.room.name": { key: "content.name", field: "name" },
  "m.room.topic": { key: "content.topic", field: "topic" },
};

/**
 * Distinct terms indexed per event, first occurrences first. Each is one KV write in the
 * event's commit, so a 64 KiB body cannot take a commit's 1,000 mutations on its own.
 */
export const MAX_TERMS_PER_EVENT = 200;

/** Longest term kept, in UTF-16 code units (longer words are cut; prefix search still finds them). */
export const MAX_TERM_LENGTH = 64;

/** Terms a query may hold; words past them are ignored. */
export const MAX_QUERY_TERMS = 16;

/** Lucene's classic English stop words (StopAnalyzer.ENGLISH_STOP_WORDS_SET). */
export const STOP_WORDS: ReadonlySet<string> = new Set([
  "a",
  "an",
  "and",
  "are",
  "as",
  "at",
  "be",
  "but",
  "by",
  "for",
  "if",
  "in",
  "into",
  "is",
  "it",
  "no",
  "not",
  "of",
  "on",
  "or",
  "such",
  "that",
  "the",
  "their",
  "then",
  "there",
  "these",
  "they",
  "this",
  "to",
  "was",
  "will",
  "with",
]);

const segmenter = new Intl.Segmenter(undefined, { granularity: "word" });
const ACCENTS = /[\u0300-\u036f]/g;
const ASCII_LETTERS = /^[a-z]+$/;

/** The word-like segments of a text, as written. */
export function wordsOf(text: string): string[] {
  const out: string[] = [];
  for (const segment of segmenter.segment(text)) {
    if (segment.isWordLike) out.push(segment.segment);
  }
  return out;
}

/** A word normalised, lower-cased and stripped of Latin/Greek/Cyrillic accents. */
export function foldWord(word: string): string {
  return word.normalize("NFKC").toLowerCase().normalize("NFD").replace(ACCENTS, "")
    .normalize("NFC");
}

/** The index term of one word (empty when nothing is left of it, or for a stop word). */
export function termOf(word: string): string {
  let folded = foldWord(word);
  if (ASCII_LETTERS.test(folded)) {
    if (STOP_WORDS.has(folded)) return "";
    folded = stemmer(folded);
  }
  return folded.slice(0, MAX_TERM_LENGTH);
}

/** How often each term occurs in a text, and how many words the text has. */
export interface TermCounts {
  /** term -> occurrences, in order of first occurrence, at most MAX_TERMS_PER_EVENT terms. */
  terms: Map<string, number>;
  /** Words in the text (all of them, also past the term cap). */
  words: number;
}

/** Count the terms of a text. */
export function countTerms(text: string): TermCounts {
  const terms = new Map<string, number>();
  let words = 0;
  for (const word of wordsOf(text)) {
    // Every word counts towards the text's length, stop words too (rank is a share of them).
    words++;
    const term = termOf(word);
    if (term === "") continue;
    const seen = terms.get(term);
    if (seen !== undefined) terms.set(term, seen + 1);
    else if (terms.size < MAX_TERMS_PER_EVENT) terms.set(term, 1);
  }
  return { terms, words };
}

/** The distinct terms of a query, in order, at most MAX_QUERY_TERMS. */
export function queryTerms(query: string): string[] {
  const out: string[] = [];
  for (const word of wordsOf(query)) {
    const term = termOf(word);
    if (term !== "" && !out.includes(term)) out.push(term);
    if (out.length === MAX_QUERY_TERMS) break;
  }
  return out;
}

/** The searchable text of an event: which key, and the text; null when nothing is indexed. */
export function searchableText(
  type: string,
  content: unknown,
): { key: SearchKey; text: string } | null {
  const indexed = INDEXED_TYPES[type];
  if (!indexed || !isJsonObject(content)) return null;
  const text = (content as JsonObject)[indexed.field];
  if (typeof text !== "string" || text === "") return null;
  return { key: indexed.key, text };
}

/** What the index holds of one event: its key (as an index of SEARCH_KEYS) and term counts. */
export interface EventTerms {
  key: number;
  counts: TermCounts;
}

/** The terms an event contributes to the index; null when it contributes none. */
export function eventTerms(type: string, content: unknown): EventTerms | null {
  const found = searchableText(type, content);
  if (!found) return null;
  const counts = countTerms(found.text);
  if (counts.terms.size === 0) return null;
  return { key: SEARCH_KEYS.indexOf(found.key), counts };
}

/**
 * The words of a text that a query's terms match (a word matches when its term starts with a
 * query term, as the index's prefix search does), lower-cased: the response's `highlights`.
 */
export function matchingWords(text: string, terms: readonly string[]): string[] {
  const out: string[] = [];
  for (const word of wordsOf(text)) {
    const term = termOf(word);
    if (terms.some((t) => term.startsWith(t))) out.push(word.toLowerCase());
  }
  return out;
}
