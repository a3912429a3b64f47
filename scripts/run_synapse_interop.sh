#!/usr/bin/env bash
# Federation interoperability with a real Synapse 1.67 (../shared/synapse): installs it (once per
# machine), makes a throwaway CA and one leaf certificate for 127.0.0.1/localhost, starts Synapse
# and Tessera side by side over HTTPS on loopback, each trusting the CA, and runs the scenario
# in tests/interop/ against both: rooms across the servers (synapse_interop.ts), then end-to-end
# encryption with matrix-js-sdk's Rust crypto on each side, typing, receipts, to-device and
# device lists (synapse_e2ee_interop.ts). Prints "Synapse interop: N passed, N failed".
#
# usage: scripts/run_synapse_interop.sh
# Env: SYNAPSE_SHARED (default ../shared/synapse), SYNAPSE_INSTALL (default
#      /tmp/tessera-synapse), INTEROP_OUT (default a temporary folder: logs and data),
#      INTEROP_SYNAPSE_PORT / INTEROP_TESSERA_PORT (default 18500 / 18600).
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_COLOR=1
shared=$(readlink -f "${SYNAPSE_SHARED:-../shared/synapse}")
install=${SYNAPSE_INSTALL:-/tmp/tessera-synapse}
out=${INTEROP_OUT:-$(mktemp -d -t tessera-interop.XXXXXX)}
synapse_port=${INTEROP_SYNAPSE_PORT:-18500}
tessera_port=${INTEROP_TESSERA_PORT:-18600}
mkdir -p "$out"

echo "== Synapse interop: installing Synapse 1.67 (once per machine)"
bash "$shared/setup.sh" "$install" >"$out/setup.log" 2>&1 ||
  { echo "Synapse interop: setup failed; see $out/setup.log"; echo "Synapse interop: 0 passed, 1 failed"; exit 1; }

# One CA, one leaf for both servers (Deno's TLS refuses a self-signed certificate used directly
# as a server certificate; a CA-signed leaf works for both).
tls="$out/tls"
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=Tessera interop CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$tls/leaf.key" -out "$tls/leaf.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$tls/ext.cnf"
openssl x509 -req -in "$tls/leaf.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
  -days 2 -extfile "$tls/ext.cnf" -out "$tls/leaf.pem" 2>/dev/null ||
  { echo "Synapse interop: certificates failed"; echo "Synapse interop: 0 passed, 1 failed"; exit 1; }

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap stop_all EXIT

echo "== Synapse interop: starting Synapse on https://127.0.0.1:$synapse_port"
synapse_pid=$(bash "$shared/start.sh" "$install" "$out/synapse" "127.0.0.1:$synapse_port" \
  "$synapse_port" "$tls/leaf.pem" "$tls/leaf.key" "$tls/ca.pem") ||
  { echo "Synapse interop: Synapse did not start"; echo "Synapse interop: 0 passed, 1 failed"; exit 1; }
pids+=("$synapse_pid")

echo "== Synapse interop: starting Tessera on https://127.0.0.1:$tessera_port"
# TESSERA_MEDIA_LEGACY=on: Synapse 1.67 knows only the unauthenticated legacy media API, which
# (frozen by default) would not serve media uploaded in this run to it.
mkdir -p "$out/tessera"
env TESSERA_SERVER_NAME="127.0.0.1:$tessera_port" TESSERA_PORT="$tessera_port" \
  TESSERA_TLS_CERT="$tls/leaf.pem" TESSERA_TLS_KEY="$tls/leaf.key" \
  TESSERA_KV_PATH="$out/tessera/interop.kv" TESSERA_REGISTRATION=open TESSERA_RATE_LIMITS=off \
  TESSERA_FEDERATION_CA_FILE="$tls/ca.pem" TESSERA_FEDERATION_ALLOW_PRIVATE=true \
  TESSERA_MEDIA_LEGACY=on \
  setsid npx -y deno@2 task start >"$out/tessera.log" 2>&1 &
pids+=("$!")
ready=0
for _ in $(seq 1 120); do
  if curl -sf --cacert "$tls/ca.pem" "https://127.0.0.1:$tessera_port/_matrix/client/versions" >/dev/null; then
    ready=1
    break
  fi
  sleep 0.5
done
if [ "$ready" -ne 1 ]; then
  echo "Synapse interop: Tessera did not start; its log:"
  tail -n 30 "$out/tessera.log"
  echo "Synapse interop: 0 passed, 1 failed"
  exit 1
fi

echo "== Synapse interop: running the scenario (logs: $out)"
# One `deno test` per file, so a file that does not load (a broken npm dependency, a type error)
# costs its own checks only; the counts are summed.
status=0
passed=0
failed=0
for scenario in synapse_interop synapse_e2ee_interop; do
  log="$out/$scenario.log"
  DENO_CERT="$tls/ca.pem" INTEROP_SYNAPSE="https://127.0.0.1:$synapse_port" \
    INTEROP_TESSERA="https://127.0.0.1:$tessera_port" \
    npx -y deno@2 test --allow-all "tests/interop/$scenario.ts" 2>&1 | tee "$log"
  file_status=${PIPESTATUS[0]}
  summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1)
  if [ -z "$summary" ]; then
    failed=$((failed + 1))
    [ "$file_status" -ne 0 ] || file_status=1
  else
    passed=$((passed + $(sed -E 's/^[A-Z a-z]+\| ([0-9]+) passed.*/\1/' <<<"$summary")))
    failed=$((failed + $(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")))
  fi
  [ "$file_status" -eq 0 ] || status=$file_status
done
if [ "$status" -ne 0 ]; then
  echo "Synapse interop: Tessera's log tail:"
  tail -n 40 "$out/tessera.log"
  # What Synapse refused or failed at (federation requests to Tessera, EDUs it dropped).
  echo "Synapse interop: Synapse's warnings and errors (last 40):"
  grep -E ' - (WARNING|ERROR) - ' "$out/synapse/homeserver.log" 2>/dev/null | tail -n 40
fi
echo "Synapse interop: $passed passed, $failed failed"
exit "$status"
