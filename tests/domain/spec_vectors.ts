/**
 * Typed access to the spec's cryptographic test vectors, read in place from the shared fixtures
 * (the repository and `shared/` sit side by side, here and in CI).
 */
import type { JsonObject } from "../../domain/protocol/json.ts";

/** The shape of /work/shared/fixtures/spec-vectors.json that the tests read. */
export interface SpecVectors {
  signing_key: {
    server_name: string;
    key_id: string;
    seed_base64: string;
    seed_base64_canonical: string;
    seed_hex: string;
    public_key_base64: string;
    public_key_hex: string;
  };
  unpadded_base64: { input_utf8: string; encoded: string }[];
  canonical_json: { input: string; canonical: string }[];
  signed_json: { input: JsonObject; signed: JsonObject; verified: boolean }[];
  signed_events: {
    input: JsonObject;
    signed: JsonObject;
    redacted_for_signing: JsonObject;
    content_hash_verified: boolean;
    signature_verified_v1_v10_redaction: boolean;
    signature_verified_v11_redaction: boolean;
  }[];
  other_examples: {
    signing_details: { object: JsonObject; verifies_with_test_key: boolean };
  };
}

/** Load the vectors; throws if the shared checkout is missing, so no test passes vacuously. */
export async function loadSpecVectors(): Promise<SpecVectors> {
  const url = new URL("../../../shared/fixtures/spec-vectors.json", import.meta.url);
  return JSON.parse(await Deno.readTextFile(url)) as SpecVectors;
}
