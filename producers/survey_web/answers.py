"""What a person sent from the survey form, cleaned and checked before anything is recorded.

Every field is optional, but an answer must say something: a level, a reopen request or a
comment. A person who disagrees (Disagree, Strongly disagree) may also choose one of NYC's
reasons (``survey.i18n.reasons``); a reason sent with any other answer is dropped, since the
page shows the question only to a person who disagrees (a browser without CSS ``:has()`` shows
it to everyone, and a reason chosen before switching to Agree stays ticked but hidden). The
reason "The Agency did not correct the issue and this Service Request should be reopened." is a
reopen request, exactly like the ticked box. An unknown reason is refused like an unknown
level. The reopen box is read exactly as the form sends it: ``reopen=yes`` when ticked, no
field when not; anything else (``false``, ``0``, ``off``, an empty value) is refused rather than
guessed at, since a wrong guess forwards a request to an agency. Comments are kept as typed
(HTML included: they are escaped wherever they are shown, never altered), with line breaks
normalised so a browser's CRLF does not count twice against the limit, and with control
characters PostgreSQL or a log line cannot hold removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from survey.i18n import N_
from survey.i18n.reasons import DISAGREEING, REASONS, REOPEN_REASON

FEEDBACK_LIMIT = 2000

# The Avro enum symbols, in the order the form shows them, with their English labels.
LEVELS: tuple[tuple[str, str], ...] = (
    ("STRONGLY_AGREE", N_("Strongly agree")),
    ("AGREE", N_("Agree")),
    ("NEUTRAL", N_("Neutral")),
    ("DISAGREE", N_("Disagree")),
    ("STRONGLY_DISAGREE", N_("Strongly disagree")),
)
_SYMBOLS = frozenset(symbol for symbol, _ in LEVELS)
_REASON_CODES = frozenset(code for code, _ in REASONS)
# The value of the form's reopen checkbox (templates/form.html); a browser omits it when unticked.
REOPEN_TICKED = "yes"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# Problems, by the code the form template shows a message for.
EMPTY = "empty"
TOO_LONG = "too_long"
INVALID_CHOICE = "invalid_choice"
INVALID_REOPEN = "invalid_reopen"


@dataclass(frozen=True)
class Answer:
    """The form's fields; ``typed_feedback`` is what goes back into the box if it is shown again.

    ``reopen`` is the box as sent; :attr:`reopen_requested` also counts the reopen reason."""

    satisfaction: str | None
    reopen: bool
    feedback: str | None
    typed_feedback: str
    problem: str | None = None
    reason: str | None = None  # a code of survey.i18n.reasons, only with a disagreeing answer

    @property
    def reopen_requested(self) -> bool:
        return self.reopen or self.reason == REOPEN_REASON


def clean_feedback(raw: str) -> str:
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text).strip()


def read_answer(fields: Mapping[str, str]) -> Answer:
    """Parse the form; ``problem`` is set (and nothing may be recorded) when it cannot be taken."""
    raw_level = fields.get("satisfaction", "").strip()
    raw_reopen = fields.get("reopen")
    reopen = raw_reopen == REOPEN_TICKED
    typed = fields.get("feedback", "")
    feedback = clean_feedback(typed) or None
    raw_reason = fields.get("reason", "").strip()
    problem: str | None = None
    satisfaction: str | None = None
    reason: str | None = None
    if raw_level:
        if raw_level in _SYMBOLS:
            satisfaction = raw_level
        else:
            problem = INVALID_CHOICE
    if raw_reason:
        if raw_reason not in _REASON_CODES:
            problem = problem or INVALID_CHOICE
        elif satisfaction in DISAGREEING:
            reason = raw_reason
    if problem is None and raw_reopen is not None and not reopen:
        problem = INVALID_REOPEN
    if problem is None and feedback is not None and len(feedback) > FEEDBACK_LIMIT:
        problem = TOO_LONG
    if problem is None and satisfaction is None and not reopen and feedback is None:
        problem = EMPTY
    return Answer(satisfaction, reopen, feedback, typed, problem, reason)
