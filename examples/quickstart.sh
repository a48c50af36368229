#!/usr/bin/env bash
# One outbound call, from nothing: start opentrunk on SQLite, make an account, a credential and
# an outbound trunk through the API, a carrier through the CLI, then place a call from a PBX
# (sipp) through the trunk to the carrier (sipp's built-in UAS) and read its call record.
# Everything listens on loopback. Run from the repository root after `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
HTTP_PORT=${HTTP_PORT:-8080}
SIP_PORT=${SIP_PORT:-5060}
CARRIER_PORT=${CARRIER_PORT:-5090}
PBX_PORT=${PBX_PORT:-5070}
DATA=${DATA:-$(mktemp -d)}
mkdir -p "$DATA"
API=http://127.0.0.1:$HTTP_PORT
json() { "$BIN/python" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

# 1. The service: HTTP API and SIP edge in one process.
"$BIN/opentrunk" serve --data-dir "$DATA" --http "127.0.0.1:$HTTP_PORT" \
  --sip "127.0.0.1:$SIP_PORT" --sip-domain zt.localhost >"$DATA/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true; wait $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "HTTP API on" "$DATA/serve.log" && break; sleep 0.1; done

# 2. The operator: an account, one of its numbers (the caller ID), a carrier.
ACCOUNT=$("$BIN/opentrunk" accounts create --name acme --json --data-dir "$DATA")
AUTH_ID=$(echo "$ACCOUNT" | json auth_id)
AUTH_TOKEN=$(echo "$ACCOUNT" | json auth_token)
"$BIN/opentrunk" numbers add +14155550100 --account "$AUTH_ID" --data-dir "$DATA" >/dev/null
"$BIN/opentrunk" carriers add --name carrier1 --address "127.0.0.1:$CARRIER_PORT" \
  --rate 0.0120 --data-dir "$DATA" >/dev/null

# 3. The customer, through the Zentrunk API: a credential and an outbound trunk using it.
ZT="$API/v1/Account/$AUTH_ID/Zentrunk"
CREDENTIAL=$(curl -sf -u "$AUTH_ID:$AUTH_TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"pbx","username":"pbx0001","password":"S3cret!pw"}' "$ZT/Credential/" \
  | json credential_uuid)
TRUNK_ID=$(curl -sf -u "$AUTH_ID:$AUTH_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"name\":\"pbx\",\"trunk_direction\":\"outbound\",\"credential_uuid\":\"$CREDENTIAL\"}" \
  "$ZT/Trunk/" | json trunk_id)
DOMAIN="$TRUNK_ID.zt.localhost"
echo "trunk $DOMAIN"

# 4. The carrier answers (sipp's built-in UAS); the PBX calls +14155550123 through the trunk.
sipp -sn uas -i 127.0.0.1 -p "$CARRIER_PORT" -m 1 -timeout 30s -nostdin >/dev/null 2>&1 &
CARRIER=$!
trap 'kill $SERVE $CARRIER 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 0.5
sipp "127.0.0.1:$SIP_PORT" -sf examples/sipp/pbx-call.xml -i 127.0.0.1 -p "$PBX_PORT" \
  -s +14155550123 -key trunk_domain "$DOMAIN" -key caller 14155550100 \
  -au pbx0001 -ap 'S3cret!pw' -auth_uri "+14155550123@$DOMAIN" \
  -m 1 -timeout 30s -timeout_error -nostdin -trace_msg -message_file "$DATA/pbx.msg" -trace_err -error_file "$DATA/pbx-errors.log" >/dev/null || { echo "call failed; see $DATA" >&2; tail -n 20 "$DATA/serve.log" "$DATA/pbx-errors.log" >&2; exit 1; }
echo "call completed"

# 5. Its call record, through the API.
sleep 1
curl -sf -u "$AUTH_ID:$AUTH_TOKEN" "$ZT/Call/?to_number=14155550123"
echo
