#!/usr/bin/env bash
# Runs Matrix's own integration suite, SyTest (../shared/sytest), against a fresh Tessera over TLS,
# then checks the result against tests/sytest/passing.txt (scripts/sytest_ratchet.ts).
#
# usage: scripts/run_sytest.sh [--update] [test files under tests/ ...]
#   --update   add newly passing tests to tests/sytest/passing.txt
# Env: SYTEST_SHARED (default ../shared/sytest beside the checkout), SYTEST_PORT (default 8448),
#      SYTEST_OUT (default a temporary folder; the run's .tap, .log and .json land there).
# Exit status: 0 when every listed test passed, 1 on a regression or when the run broke.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
update=()
if [ "${1:-}" = "--update" ]; then update=(--update); shift; fi
sytest=$(readlink -f "${SYTEST_SHARED:-../shared/sytest}")
port=${SYTEST_PORT:-8448}
out=${SYTEST_OUT:-$(mktemp -d -t tessera-sytest.XXXXXX)}
mkdir -p "$out"
if [ ! -x "$sytest/run.sh" ]; then
  echo "SyTest: not found at $sytest (set SYTEST_SHARED)"
  exit 1
fi

echo "== SyTest: installing its Perl dependencies from Debian (once per machine)"
bash "$sytest/install-deps.sh" || { echo "SyTest: installing dependencies failed"; exit 1; }
bash "$sytest/make-cert.sh" "$out/tls" >/dev/null || { echo "SyTest: certificate failed"; exit 1; }

# SyTest acts as the identity server, SMTP server and push gateway on ports of its pool (it
# takes them from SYTEST_PORTS in order: its HTTPS server the first, its SMTP server the second),
# all on loopback: the server must be allowed to dial private addresses for this run and must
# accept SyTest's certificates (its identity server's has no subject alternative name, which
# Deno's fetch refuses whatever CA it trusts, hence TESSERA_OUTBOUND_TLS_VERIFY=off). In the
# federation tests SyTest plays the remote homeserver, over HTTPS with a certificate of its CA;
# it speaks room versions up to 11 only, so rooms are made at 10 (Synapse 1.67's default) here.
# SyTest reads media over the unauthenticated /_matrix/media paths, which Synapse 1.67 served
# for everything (TESSERA_MEDIA_LEGACY=on), and previews pages its own server hosts on loopback.
pool_start=19150
export SYTEST_PORTS="$pool_start:$((pool_start + 49))"
server_env=(
  TESSERA_SERVER_NAME="localhost:$port" TESSERA_PORT="$port"
  TESSERA_TLS_CERT="$out/tls/server.crt" TESSERA_TLS_KEY="$out/tls/server.key"
  TESSERA_KV_PATH="$out/kv/sytest.kv" TESSERA_REGISTRATION=open TESSERA_RATE_LIMITS=off
  TESSERA_GUEST_ACCESS=on TESSERA_OUTBOUND_ALLOW_PRIVATE=on TESSERA_OUTBOUND_TLS_VERIFY=off
  TESSERA_SMTP_URL="smtp://localhost:$((pool_start + 1))"
  TESSERA_FEDERATION_CA_FILE="$sytest/harness/sytest/keys/ca.crt" TESSERA_FEDERATION_ALLOW_PRIVATE=true
  TESSERA_DEFAULT_ROOM_VERSION=10
  TESSERA_MEDIA_LEGACY=on TESSERA_URL_PREVIEW_ALLOW_PRIVATE=true
  DENO_CERT="$sytest/harness/sytest/keys/ca.crt"
)
mkdir -p "$out/kv"
echo "== SyTest: starting Tessera on https://127.0.0.1:$port (log: $out/server.log)"
env "${server_env[@]}" setsid npx -y deno@2 task start >"$out/server.log" 2>&1 &
server_pid=$!
stop_server() { kill -- "-$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; }
trap stop_server EXIT
ready=0
for _ in $(seq 1 120); do
  if curl -skf "https://127.0.0.1:$port/_matrix/client/versions" >/dev/null; then ready=1; break; fi
  sleep 1
done
if [ "$ready" -ne 1 ]; then
  echo "SyTest: the server did not start; its log:"
  tail -n 30 "$out/server.log"
  exit 1
fi

echo "== SyTest: running ${*:-the whole suite} (about 10 minutes for all of it)"
bash "$sytest/run.sh" "https://127.0.0.1:$port" "localhost:$port" "$out/sytest" "$@"
stop_server
trap - EXIT
if [ ! -s "$out/sytest.json" ]; then
  echo "SyTest: the run produced no results; see $out/sytest.log"
  exit 1
fi
subset=()
if [ "$#" -gt 0 ]; then subset=(--subset); fi
npx -y deno@2 run --allow-read --allow-write "$root/scripts/sytest_ratchet.ts" \
  "$out/sytest.json" "${update[@]}" "${subset[@]}"
