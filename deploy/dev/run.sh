#!/usr/bin/env bash
# `make run`: the full service on https://127.0.0.1:8443 with mTLS and demo data.
#
# Idempotent: keys are never overwritten, migrations and the sample import are
# re-runnable, the issuer and the demo identities are registered once. Each run
# issues a fresh demo case reference (a court would issue a new one, too).
set -euo pipefail
cd "$(dirname "$0")/../.."

TAXADDR="${TAXADDR:-.venv/bin/taxaddr}"
export TAXADDR_KEYS_DIR="${TAXADDR_KEYS_DIR:-keys/dev}"
export TAXADDR_DATABASE_URL="${TAXADDR_DATABASE_URL:-sqlite:///var/taxaddr.db}"
HOST="${TAXADDR_HOST:-127.0.0.1}"
PORT="${TAXADDR_PORT:-8443}"
CERTS="${TAXADDR_DEMO_CERTS:-var/certs}"
SAMPLE="${TAXADDR_DEMO_SAMPLE:-tests/data/sample.csv}"
REQUESTER=hsi-agent-0042
AGENCY=ICE-HSI
STATUTE="8 U.S.C. 1253(a)(1)"

mkdir -p var "$CERTS"
echo "== key material ($TAXADDR_KEYS_DIR)"
"$TAXADDR" keys init
echo "== database ($TAXADDR_DATABASE_URL)"
"$TAXADDR" db upgrade
echo "== synthetic sample ($SAMPLE)"
"$TAXADDR" import "$SAMPLE"
echo "== trusted issuer dev-court"
"$TAXADDR" issuer add --id dev-court --jwk "$TAXADDR_KEYS_DIR/issuers/dev-court.jwk"
echo "== demo identities (certificates in $CERTS)"
"$TAXADDR" requester add --id "$REQUESTER" --agency "$AGENCY" --role requester --issue-cert "$CERTS"
"$TAXADDR" requester add --id tigta-overseer --agency TIGTA --role oversight --issue-cert "$CERTS"
"$TAXADDR" requester add --id prometheus --agency TIGTA --role monitor --issue-cert "$CERTS"
"$TAXADDR" requester add --id irs-disclosure-officer --agency IRS --role disclosure_officer --issue-cert "$CERTS"
"$TAXADDR" requester add --id irs-orders-clerk --agency IRS --role admin --issue-cert "$CERTS"
echo "== demo case reference (var/demo-case.jws)"
"$TAXADDR" case issue --issuer dev-court --case-number "1:26-cr-00123" --court "D.D.C." \
  --proceeding criminal --statute "$STATUTE" --agency "$AGENCY" --requester "$REQUESTER" \
  --subject 987-65-4321 --subject 987-65-4322 --tax-period 2023 --tax-period 2024 \
  --max-disclosures 25 --valid-days 30 > var/demo-case.jws

CLIENT="--cert $CERTS/$REQUESTER.crt --key $CERTS/$REQUESTER.key --ca $CERTS/ca.crt --url https://$HOST:$PORT"
cat <<MSG

taxaddr is starting on https://$HOST:$PORT (mTLS; Ctrl-C stops it). In another shell:

# a disclosure that succeeds (prints the address, the audit leaf and a signed receipt):
$TAXADDR request $CLIENT \\
  --case-ref "\$(cat var/demo-case.jws)" --tin 987-65-4321 --name "JANE Q TESTPERSON" \\
  --address "100 Example St NW, Washington, DC 20001" --tax-period 2024 \\
  --statute "$STATUTE" \\
  --reason "Subject is charged under 8 U.S.C. 1253(a)(1) in 1:26-cr-00123; the arrest warrant must be served at her residence."

# one that is refused (403 reason_insufficient: a boilerplate reason; exit status 1):
$TAXADDR request $CLIENT \\
  --case-ref "\$(cat var/demo-case.jws)" --tin 987-65-4321 --name "JANE Q TESTPERSON" \\
  --address "100 Example St NW, Washington, DC 20001" --tax-period 2024 \\
  --statute "$STATUTE" --reason "immigration enforcement"

# oversight: the signed audit checkpoint
curl --cacert $CERTS/ca.crt --cert $CERTS/tigta-overseer.crt --key $CERTS/tigta-overseer.key \\
  https://$HOST:$PORT/v1/audit/checkpoint

# trust changes (issuer keys, requesters, revocations, KEK, policy versions) are leaves too:
$TAXADDR audit admin-log

# a court order: stay disclosures to $AGENCY (a signed stay, applied as a leaf; the demo
# request above is then refused disclosure_stayed), list the orders, write the stay's
# signed impact list (what was disclosed in its scope before it took effect, to recall),
# verify it, and lift the stay again:
$TAXADDR order issue --issuer dev-court --kind stay --number "1:25-cv-04321" \\
  --court "D.D.C." --agency "$AGENCY" > var/demo-stay.jws
$TAXADDR order apply var/demo-stay.jws
$TAXADDR order list
STAY="\$($TAXADDR order list | awk -F'\t' '\$2 == "stay" && \$7 == "yes" {print \$1; exit}')"
$TAXADDR order impact "\$STAY" --format pdf --out var/stay-impact.pdf && $TAXADDR report verify var/stay-impact.pdf
# (the lift over the API instead, as the IRS's orders clerk, role admin: 201 and its leaf)
$TAXADDR order issue --issuer dev-court --kind lift --number "1:25-cv-04321" --court "D.D.C." \\
  --lifts "\$STAY" > var/demo-lift.jws
curl --cacert $CERTS/ca.crt --cert $CERTS/irs-orders-clerk.crt --key $CERTS/irs-orders-clerk.key \\
  -H 'content-type: application/json' https://$HOST:$PORT/v1/orders \\
  -d '{"order": "'\$(cat var/demo-lift.jws)'"}'

# the public transparency report (counts below 10 shown as "<10"; signed, FILE.sig), checked:
$TAXADDR report transparency --from "\$(date -u +%Y-%m-01)" --to "\$(date -u +%F)" \\
  --format pdf --out var/transparency.pdf && $TAXADDR report verify var/transparency.pdf

# a static C2SP tlog-tiles mirror of the log, and the key to verify it with:
$TAXADDR audit export-tiles --out var/mirror && $TAXADDR audit vkey

# taxpayer accounting (6103(p)(3)(A)): every disclosure of one taxpayer's address with its
# inclusion proof; a signed letter to the taxpayer (PDF, FILE.sig), or the same over the API:
$TAXADDR accounting subject --tin 987-65-4321 --name "JANE Q TESTPERSON" --format pdf \\
  --out var/accounting-letter.pdf \\
  --reason "Taxpayer letter of 2026-11-30 asks whether and why her address was disclosed."
curl --cacert $CERTS/ca.crt --cert $CERTS/irs-disclosure-officer.crt --key $CERTS/irs-disclosure-officer.key \\
  -H 'content-type: application/json' https://$HOST:$PORT/v1/accounting/subject -d '{"request_id": "'\$(python3 -c 'import uuid; print(uuid.uuid4())')'", "subject": {"tin": "987-65-4321", "name": "JANE Q TESTPERSON"}, "reason": "Taxpayer letter of 2026-11-30 asks whether and why her address was disclosed."}'

MSG
exec "$TAXADDR" serve --host "$HOST" --port "$PORT"
