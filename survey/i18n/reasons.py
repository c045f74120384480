"""NYC's reasons for dissatisfaction: the optional question the survey asks a person who
disagrees, as NYC's 311 Resolution Satisfaction Survey does (NYC Open Data 5ijn-vbdv, column
Dissatisfaction Reason).

Each reason is the Avro symbol SurveyAnswered carries (``dissatisfaction_reason``, a stable code)
with NYC's English text, exactly as the City publishes it: that text is the msgid the ten other
languages translate, and it is what the published ``survey_responses`` table says, whatever
language the person answered in. The order is the order the form offers them.

The survey page reads these (``producers/survey_web``), and so does the publication
(``reports``), so the code and its text are written once; ``tests/survey/test_reasons.py``
holds them to the schema's symbols and to the list NYC publishes.
"""

from __future__ import annotations

from schemas.validate import DISAGREEING, REOPEN_REASON
from survey.i18n.catalogs import N_

__all__ = ["DISAGREEING", "REASONS", "REASON_TEXT", "REOPEN_REASON"]

REASONS: tuple[tuple[str, str], ...] = (
    # TRANSLATORS: a reason for being dissatisfied; "the Agency" handled the request.
    ("NOT_CORRECTED", N_("The Agency did not correct the issue.")),
    ("NOT_CORRECTED_REOPEN",
     # TRANSLATORS: choosing this reason asks for the request to be reopened.
     N_("The Agency did not correct the issue and this Service Request should be reopened.")),
    ("CORRECTED_TOO_LATE",
     N_("The Agency corrected the issue, but they took too long to respond.")),
    ("CORRECTED_UNSATISFACTORY",
     N_("The Agency corrected the issue, but the work they did was unsatisfactory.")),
    ("TOO_FEW_UPDATES", N_("The Agency did not provide enough status updates.")),
    ("UNHELPFUL_UPDATES",
     N_("Status updates were unhelpful, inaccurate, incomplete, and/or confusing.")),
    ("INFORMATION_DISPUTED",
     N_("The Agency said I did not provide complete or accurate information, but I did.")),
    # TRANSLATORS: the last reason for being dissatisfied: none of the reasons above.
    ("OTHER", N_("Other")),
)
#: code -> NYC's English text
REASON_TEXT: dict[str, str] = dict(REASONS)
