#!/usr/bin/env bash
# The user flow with curl and jq, top to bottom, against a running system (./run.sh serve).
# Every run uses fresh emails and idempotency keys, so it can run again and again.
set -euo pipefail
API=${API:-http://127.0.0.1:8000/api/v1}
ADMIN_EMAIL=${ADMIN_EMAIL:-admin@bank.local}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-admin-password-for-demo-only}
RUN=$(date +%s)-$RANDOM
call() { curl -sS --fail-with-body -H 'Content-Type: application/json' "$@"; }  # stops on any 4xx/5xx
settled() {  # polls transfer $1 with token $2 until the worker has decided it; prints its status
  local status
  for _ in $(seq 100); do
    status=$(call "$API/transfers/$1" -H "Authorization: Bearer $2" | jq -r .status)
    [ "$status" != PENDING ] && break
    sleep 0.2
  done
  echo "$status"
}

# 1. register Alice and Bob: users PENDING KYC and INACTIVE, one INACTIVE USD account each, balance 0
ALICE=$(call "$API/auth/register" \
  -d "{\"email\":\"alice-$RUN@example.com\",\"password\":\"correct horse battery\",\"full_name\":\"Alice\"}")
BOB=$(call "$API/auth/register" \
  -d "{\"email\":\"bob-$RUN@example.com\",\"password\":\"correct horse battery\",\"full_name\":\"Bob\"}")
ALICE_ACCOUNT=$(jq -r .account.id <<<"$ALICE")
BOB_ACCOUNT=$(jq -r .account.id <<<"$BOB")

# 2. an admin approves both KYCs: users and accounts become ACTIVE
ADMIN=$(call "$API/auth/login" -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | jq -r .access_token)
for USER_ID in $(jq -r .user.id <<<"$ALICE") $(jq -r .user.id <<<"$BOB"); do
  call "$API/admin/users/$USER_ID/kyc" -H "Authorization: Bearer $ADMIN" -d '{"decision":"APPROVE"}' \
    | jq -c '{email, kyc_status, status}'
done

# 3. Alice logs in and sets her transaction PIN
TOKEN=$(call "$API/auth/login" -d "{\"email\":\"alice-$RUN@example.com\",\"password\":\"correct horse battery\"}" \
  | jq -r .access_token)
call -X PUT "$API/me/pin" -H "Authorization: Bearer $TOKEN" -d '{"pin":"2468"}'

# 4. the admin deposits 100.00 USD (money comes from the bank's USD settlement account)
call "$API/admin/accounts/$ALICE_ACCOUNT/deposits" -H "Authorization: Bearer $ADMIN" -H "Idempotency-Key: dep-$RUN" \
  -d '{"amount":10000,"currency":"USD"}' | jq -c '.transfer | {kind, amount, status}'

# 5. transfer 25.10 USD to Bob (202, PENDING); the same call again is a replay: 200, the same transfer
TRANSFER="{\"source_account_id\":\"$ALICE_ACCOUNT\",\"destination_account_id\":\"$BOB_ACCOUNT\",\
\"amount\":2510,\"currency\":\"USD\",\"pin\":\"2468\",\"reference\":\"invoice 42\"}"
TRANSFER_ID=$(call "$API/transfers" -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: order-$RUN" \
  -d "$TRANSFER" | jq -r .id)
call -i "$API/transfers" -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: order-$RUN" -d "$TRANSFER" \
  | grep -i -e '^HTTP/' -e '^idempotent-replayed'

# 6. poll until the worker has settled it
echo "transfer $TRANSFER_ID: $(settled "$TRANSFER_ID" "$TOKEN")"

# 7. balances and the ledger (newest first)
call "$API/accounts" -H "Authorization: Bearer $TOKEN" | jq -c '.items[] | {currency, balance, available_balance}'
call "$API/accounts/$ALICE_ACCOUNT/entries?limit=20" -H "Authorization: Bearer $TOKEN" \
  | jq -c '.items[] | {amount, balance_after}'

# 8. a hold: 40.00 USD reserved for Bob (ends HELD: balance unchanged, available_balance lower),
#    then 30.00 captured (COMPLETED, captured_amount 3000) and the other 10.00 released
HOLD_ID=$(call "$API/transfers" -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: hold-$RUN" -d "{\
\"source_account_id\":\"$ALICE_ACCOUNT\",\"destination_account_id\":\"$BOB_ACCOUNT\",\"amount\":4000,\
\"currency\":\"USD\",\"pin\":\"2468\",\"hold\":true,\"hold_expires_in_seconds\":3600}" | jq -r .id)
echo "hold $HOLD_ID: $(settled "$HOLD_ID" "$TOKEN")"
call "$API/accounts/$ALICE_ACCOUNT" -H "Authorization: Bearer $TOKEN" | jq -c '{balance, available_balance}'
call "$API/transfers/$HOLD_ID/capture" -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: capture-$RUN" \
  -d '{"amount":3000}' | jq -c '{status, amount, captured_amount}'

# 9. Bob refunds 10.00 of the 25.10 he received: a REFUND transfer back to Alice, settled like any other
BOB_TOKEN=$(call "$API/auth/login" -d "{\"email\":\"bob-$RUN@example.com\",\"password\":\"correct horse battery\"}" \
  | jq -r .access_token)
REFUND_ID=$(call "$API/transfers/$TRANSFER_ID/refunds" -H "Authorization: Bearer $BOB_TOKEN" \
  -H "Idempotency-Key: refund-$RUN" -d '{"amount":1000,"reason":"one item returned"}' | jq -r .id)
echo "refund $REFUND_ID: $(settled "$REFUND_ID" "$BOB_TOKEN")"

# 10. an atomic batch: one request, one PIN, each item with its own key; all settle together or all fail
BATCH=$(call "$API/transfers/batch" -H "Authorization: Bearer $TOKEN" -d "{\"pin\":\"2468\",\"atomic\":true,\"items\":[
  {\"idempotency_key\":\"rent-$RUN\",\"source_account_id\":\"$ALICE_ACCOUNT\",\
\"destination_account_id\":\"$BOB_ACCOUNT\",\"amount\":500,\"currency\":\"USD\"},
  {\"idempotency_key\":\"fees-$RUN\",\"source_account_id\":\"$ALICE_ACCOUNT\",\
\"destination_account_id\":\"$BOB_ACCOUNT\",\"amount\":700,\"currency\":\"USD\"}]}")
for ID in $(jq -r '.items[].transfer.id' <<<"$BATCH"); do echo "batch item $ID: $(settled "$ID" "$TOKEN")"; done

# 11. Alice's statement for the last hour: opening + entries = closing; then the same as CSV
FROM=$(jq -rn 'now - 3600 | todate')
TO=$(jq -rn 'now + 60 | todate')
call "$API/accounts/$ALICE_ACCOUNT/statement?from=$FROM&to=$TO" -H "Authorization: Bearer $TOKEN" \
  | jq -c '{opening_balance, closing_balance, entries: (.entries | length)}'
curl -sS --fail-with-body -H 'Accept: text/csv' -H "Authorization: Bearer $TOKEN" \
  "$API/accounts/$ALICE_ACCOUNT/statement?from=$FROM&to=$TO" | head -3

# 12. a credit line and a daily limit: the admin lets Alice go down to -50.00 and caps what she sends today at
#     90.00 more than she has sent so far; 80.00 to Bob takes her below zero, then 12.00 more breaks the day's cap
USED=$(call "$API/accounts/$ALICE_ACCOUNT/limits" -H "Authorization: Bearer $TOKEN" | jq .used_today)
call -X PUT "$API/admin/accounts/$ALICE_ACCOUNT/limits" -H "Authorization: Bearer $ADMIN" \
  -d "{\"credit_limit\":5000,\"daily_outgoing\":$((USED + 9000)),\"reason\":\"overdraft approved\"}" \
  | jq -c '{credit_limit, room_today: (.daily_outgoing - .used_today)}'
for AMOUNT in 8000 1200; do
  ID=$(call "$API/transfers" -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: line-$AMOUNT-$RUN" -d "{\
\"source_account_id\":\"$ALICE_ACCOUNT\",\"destination_account_id\":\"$BOB_ACCOUNT\",\"amount\":$AMOUNT,\
\"currency\":\"USD\",\"pin\":\"2468\"}" | jq -r .id)
  settled "$ID" "$TOKEN" >/dev/null
  call "$API/transfers/$ID" -H "Authorization: Bearer $TOKEN" \
    | jq -c '{amount, status, failure_code, limit: .failure_detail.limit}'
done
call "$API/accounts/$ALICE_ACCOUNT" -H "Authorization: Bearer $TOKEN" | jq -c '{balance, credit_limit, available_balance}'
