"""Answer part of the demo's survey emails through the survey page, as people would.

Reads the mail the demo's mail catcher received (a Maildir), follows each survey link with an
HTTP GET, and for a share of them POSTs an answer with the mix NYC's own 311 Resolution
Satisfaction Survey shows: about 54% strongly disagree, 24% strongly agree, 9% agree,
8% disagree, 5% neutral. Dissatisfied people ask for a reopen more often, and most of them
choose one of NYC's reasons, in the proportions NYC's survey dataset shows (Open Data 5ijn-vbdv:
"The Agency did not correct the issue." about half, "Other" 30%, ...). Deterministic for a seed.

    python demo/answer_surveys.py --maildir outbox/mail --share 0.4 --seed 311
"""

from __future__ import annotations

import argparse
import mailbox
import random
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email.message import Message

import httpx

MIX = [("STRONGLY_DISAGREE", 54), ("STRONGLY_AGREE", 24), ("AGREE", 9), ("DISAGREE", 8),
       ("NEUTRAL", 5)]
REOPEN_SHARE = {"STRONGLY_DISAGREE": 0.45, "DISAGREE": 0.25, "NEUTRAL": 0.05}
FEEDBACK = {
    "STRONGLY_DISAGREE": ["The problem is still there.", "Nobody came.",
                          "The request was closed without anything being done."],
    "DISAGREE": ["It took too long.", "Only part of it was fixed."],
    "NEUTRAL": ["OK."],
    "AGREE": ["Thank you."],
    "STRONGLY_AGREE": ["Fixed the same day, thank you!", "Great service."],
}
# NYC's Dissatisfaction Reason counts (5ijn-vbdv, 2022-2025), by the survey's codes
REASON_MIX = [("NOT_CORRECTED", 110718), ("OTHER", 67366), ("UNHELPFUL_UPDATES", 18152),
              ("NOT_CORRECTED_REOPEN", 16036), ("CORRECTED_TOO_LATE", 4192),
              ("INFORMATION_DISPUTED", 3407), ("TOO_FEW_UPDATES", 2589),
              ("CORRECTED_UNSATISFACTORY", 2152)]
REASON_SHARE = 0.8  # of the people who disagree, those who answer the optional question
LINK = re.compile(r"https?://[^\s<>\"']+/survey/[A-Za-z0-9_.\-]+")


def survey_link(message: Message) -> str | None:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                text = payload.decode(part.get_content_charset() or "utf-8", "replace")
                match = LINK.search(text)
                if match:
                    return match.group(0)
    return None


def wait_for_outbox(client: httpx.Client, base_url: str, seconds: float = 120) -> bool:
    """Answers reach Kafka through the survey page's outbox: wait until it has sent them all,
    so the projector run next sees every one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.get(f"{base_url}/healthz").text.strip() == "ready: outbox empty":
            return True
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--share", type=float, default=0.4, help="share of surveys answered")
    parser.add_argument("--seed", type=int, default=311)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    levels, weights = zip(*MIX, strict=True)
    reasons, reason_weights = zip(*REASON_MIX, strict=True)
    links = sorted(filter(None, (survey_link(m) for m in mailbox.Maildir(args.maildir,
                                                                         create=False))))
    plans = []  # decided up front, so the answers do not depend on the order of the threads
    for link in links:
        if rng.random() >= args.share:
            continue
        level = rng.choices(levels, weights)[0]
        form = {"satisfaction": level, "feedback": ""}
        if rng.random() < REOPEN_SHARE.get(level, 0.0):
            form["reopen"] = "yes"  # the value of the form's checkbox
        if level in ("DISAGREE", "STRONGLY_DISAGREE") and rng.random() < REASON_SHARE:
            form["reason"] = rng.choices(reasons, reason_weights)[0]
        if rng.random() < 0.3:
            form["feedback"] = rng.choice(FEEDBACK[level])
        plans.append((link, form))

    def answer(client: httpx.Client, link: str, form: dict[str, str]) -> bool:
        if client.get(link).status_code != 200:  # open the page, as a person would
            return False
        return client.post(link, data=form).status_code == 200

    answered: Counter[str] = Counter()
    reopens = errors = 0
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        results = pool.map(lambda plan: answer(client, *plan), plans)
        for (_link, form), ok in zip(plans, results, strict=True):
            if ok:
                answered[form["satisfaction"]] += 1
                reopens += "reopen" in form or form.get("reason") == "NOT_CORRECTED_REOPEN"
            else:
                errors += 1
        if plans and not wait_for_outbox(client, plans[0][0].split("/survey/")[0]):
            print("the survey page's outbox did not empty: is Kafka up?", file=sys.stderr)
            errors += 1
    total = sum(answered.values())
    print(f"answered {total:,} of {len(links):,} survey emails through the survey page "
          f"({reopens:,} asked for a reopen, {errors:,} errors)")
    for level, _ in MIX:
        share = answered[level] / total if total else 0.0
        print(f"  {level.lower().replace('_', ' '):<18} {answered[level]:>6,}  {share:6.1%}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
