#!/usr/bin/env bash
# The main job end to end on a simulated month (run by `make demo`, after `make services-up`):
# simulate -> project -> send surveys (email to a local mail catcher, SMS to a local
# SNS-compatible server) -> answer part of them through the survey page -> project the answers
# -> forward reopen requests -> purge contacts that are due -> summary -> publish. Each service
# connects to PostgreSQL as its own login; the owner only migrates (and shows the summary).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
MONTH=${DEMO_MONTH:?DEMO_MONTH=YYYY-MM}
REQUESTS=${DEMO_REQUESTS:-20000}
SEED=${DEMO_SEED:-311}
SHARE=${DEMO_ANSWER_SHARE:-0.4}
OUT=outbox
SMTP_PORT=${DEMO_SMTP_PORT:-18025}
SNS_PORT=${DEMO_SNS_PORT:-18026}
WEB_PORT=${DEMO_WEB_PORT:-18311}
SITE_PORT=${DEMO_SITE_PORT:-8000}  # where the end of the demo says to serve site/

export NYC311_LOG_FORMAT=${NYC311_LOG_FORMAT:-text}
export NYC311_SURVEY_SECRET=${NYC311_SURVEY_SECRET:-demo-only-secret-do-not-use-in-production}
export NYC311_SURVEY_BASE_URL=http://127.0.0.1:$WEB_PORT
export SMTP_HOST=127.0.0.1 SMTP_PORT=$SMTP_PORT SMTP_STARTTLS=false
export SMS_PROVIDER=sns AWS_ENDPOINT_URL_SNS=http://127.0.0.1:$SNS_PORT AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
# The site's public address, the one the demo tells you to open: data.json's links are
# absolute under it, as DCAT-US harvesters need (without it they are relative, and publish
# warns).
export NYC311_SITE_URL=http://127.0.0.1:$SITE_PORT/
# The demo produces the whole month so far at once, as if it had happened live: survey every
# closure of the month, not only those of the last NYC311_SURVEY_MAX_CLOSURE_AGE_DAYS (7 days).
export NYC311_SURVEY_MAX_CLOSURE_AGE_DAYS=${NYC311_SURVEY_MAX_CLOSURE_AGE_DAYS:-31}

step() { printf '\n== %s ==\n' "$*"; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_for_port() {  # port, name, log, pid of our server
  for _ in $(seq 1 150); do
    # ours must still run: a port answering while ours exited is another process's
    if ! kill -0 "$4" 2>/dev/null; then break; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not start; its log:" >&2; cat "$3" >&2; exit 1
}

# A port taken by anything else (a mail catcher or SNS server left over from an earlier demo,
# another program) stops the demo here, naming the port and the variable that picks another,
# rather than letting it talk to a stale server. Kafka's and PostgreSQL's ports were checked by
# `make services-up`.
for check in "DEMO_SMTP_PORT $SMTP_PORT mail catcher" "DEMO_SNS_PORT $SNS_PORT SNS server" \
             "DEMO_WEB_PORT $WEB_PORT survey page"; do
  # shellcheck disable=SC2086 # variable, port, then the words of what it is for
  bash services/services.sh check-port $check
done

rm -rf "$OUT" && mkdir -p "$OUT"  # the mail catcher creates the Maildir itself
step "mail catcher (SMTP on $SMTP_PORT, into $OUT/mail), SNS-compatible server on $SNS_PORT"
$BIN/python -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$OUT/mail" \
  >"$OUT/smtp.log" 2>&1 & pids+=($!)
$BIN/python -m moto.server -H 127.0.0.1 -p "$SNS_PORT" >"$OUT/sns.log" 2>&1 & pids+=($!)
wait_for_port "$SMTP_PORT" "mail catcher" "$OUT/smtp.log" "${pids[0]}"
wait_for_port "$SNS_PORT" "SNS server" "$OUT/sns.log" "${pids[1]}"

step "migrate (the owner's only job), create topics, give each service a login of its own"
$BIN/nyc311 db upgrade
$BIN/nyc311 topics create
# Every service connects as a login that is a member of its own role (storage/roles.py), as in
# production: the projector cannot read a key, the survey page cannot read a contact, and so on.
export NYC311_LOGIN_PASSWORD=${NYC311_LOGIN_PASSWORD:-demo-only-login-password}
declare -A URL
while read -r service url; do URL[$service]=$url; done < <($BIN/python - <<'EOF'
import os
from sqlalchemy.engine import make_url
from nyc311.settings import load_settings
owner = make_url(load_settings().database_url)
for service in ("projector", "dispatcher", "survey_web", "forwarder", "aggregator", "purge",
                "producer"):
    login = owner.set(username=f"demo_{service}", password=os.environ["NYC311_LOGIN_PASSWORD"])
    print(service, login.render_as_string(hide_password=False))
EOF
)
for service in "${!URL[@]}"; do $BIN/nyc311 db login "nyc311_$service" "demo_$service"; done
# as SERVICE COMMAND…: run in the foreground (a server in the background is started with its
# DATABASE_URL directly, so that $! is the server's own pid, which the clean-up stops)
as() { local service=$1; shift; DATABASE_URL=${URL[$service]} "$@"; }

# The demo's surveys are answered today, so the month that holds the answers is the current one:
# it is simulated up to now and published as a preliminary revision (as of now). On the 1st,
# `nyc311 run aggregator` publishes the preceding month for good.
CURRENT=$(TZ=America/New_York date +%Y-%m)
if [ "$MONTH" = "$CURRENT" ]; then UNTIL=(--until now); AS_OF=(--as-of now); else UNTIL=(); AS_OF=(); fi

step "simulate $MONTH: $REQUESTS requests (seed $SEED)"
as producer $BIN/nyc311 simulate --month "$MONTH" --requests "$REQUESTS" --seed "$SEED" "${UNTIL[@]}"

step "project into PostgreSQL"
as projector $BIN/nyc311 run projector --until-caught-up --max-seconds 600

step "send the surveys"
as dispatcher $BIN/nyc311 run dispatcher --until-caught-up --max-seconds 900
echo "emails in $OUT/mail: $(find "$OUT/mail/new" -type f | wc -l)"
$BIN/python - "$SNS_PORT" <<'EOF'
import json, sys, urllib.request
data = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/data.json"))
print(f"text messages at the SNS server: {len(data.get('sns', {}).get('SMS', [])):,}")
EOF

step "survey page on $NYC311_SURVEY_BASE_URL; answering ${SHARE} of the emailed surveys"
bash services/services.sh check-port DEMO_WEB_PORT "$WEB_PORT" survey page  # still free?
DATABASE_URL=${URL[survey_web]} $BIN/nyc311 survey-web --port "$WEB_PORT" >"$OUT/survey-web.log" 2>&1 & pids+=($!)
wait_for_port "$WEB_PORT" "survey page" "$OUT/survey-web.log" "${pids[2]}"
$BIN/python demo/answer_surveys.py --maildir "$OUT/mail" --share "$SHARE" --seed "$SEED"

step "project the answers, forward the reopen requests"
as projector $BIN/nyc311 run projector --until-caught-up --max-seconds 600
as forwarder $BIN/nyc311 run reopen-forwarder --until-caught-up --max-seconds 600

step "consumer lag: every group should be OK, with no lag left"
$BIN/nyc311 lag --group nyc311-projector --group nyc311-dispatcher --group nyc311-reopen-forwarder

step "erase the contacts whose surveys are done (none yet: kept NYC311_CONTACT_RETENTION_DAYS)"
as purge $BIN/nyc311 run privacy-purge --once

step "what is in PostgreSQL now"
$BIN/nyc311 db summary

step "publish $MONTH to site/"
as aggregator $BIN/nyc311 publish --month "$MONTH" --out site "${AS_OF[@]}"
echo
echo "Open site/index.html (or: python3 -m http.server -d site $SITE_PORT, then $NYC311_SITE_URL)"
echo "The month's page: site/$MONTH/index.html; its data: site/data/$MONTH/"
