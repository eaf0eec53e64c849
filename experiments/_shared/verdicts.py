"""The rules that judge Fig. 4's two claims from a depth sweep's summary, fixed before any run
(shared by ``experiments.reproduce``'s report and ``experiments.aggregate --claims-table``).

- The optimal rate falls like 1/N_l: "reproduces" when the 90% interval of ``lr_exponent`` (the
  late depths) lies inside [-1.3, -0.7]; "partly" when its upper end is below -0.2.
- Learning time saturates: "reproduces" when the 90% interval of ``learning_time_late_slope``
  reaches down to within 0.15 of the late slope of the paper's own prediction on the same data
  (``theory_learning_time_late_slope``: Eq. 15 at the supplement's optimal rate); "partly" when
  its upper end is below 0.6.
"""

from __future__ import annotations

YES, PARTLY, NO = "reproduces", "partly", "does not reproduce"

RATE_BAND = (-1.3, -0.7)
RATE_PARTLY_BELOW = -0.2
SATURATION_MARGIN = 0.15
SATURATION_PARTLY_BELOW = 0.6


def rate_verdict(s: dict) -> str:
    ci = s.get("lr_exponent_ci")
    if s.get("lr_exponent") is None or not ci:
        return NO
    if RATE_BAND[0] <= ci[0] and ci[1] <= RATE_BAND[1]:
        return YES
    return PARTLY if ci[1] < RATE_PARTLY_BELOW else NO


def saturation_verdict(s: dict) -> str:
    ci, th = s.get("learning_time_late_slope_ci"), s.get("theory_learning_time_late_slope")
    if s.get("learning_time_late_slope") is None or not ci:
        return NO
    if th is not None and ci[0] <= th + SATURATION_MARGIN:
        return YES
    return PARTLY if ci[1] < SATURATION_PARTLY_BELOW else NO
