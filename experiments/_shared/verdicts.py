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


def where_claims_hold(summaries: list[tuple[str, dict]]) -> list[str]:
    """The summary of docs/fig4.md's "Where the paper's claims hold" for the report: one
    markdown row per committed depth sweep (``(file name, summary)``, summary_version >= 2), with
    the two verdicts by the rules above and the slopes they judge."""

    def ci(x) -> str:
        return "" if not x else f" [{x[0]:.2f}, {x[1]:.2f}]"

    def g(x) -> str:
        return "–" if x is None else f"{x:.3g}"

    rows = ["| data | inputs | eps | depths | optimal rate ~ 1/N_l: `lr_exponent` (paper) | learning time saturates: "
            "late slope (paper) | starts | run |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in summaries:
        if s.get("experiment") != "depth_sweep" or s.get("summary_version", 1) < 2:
            continue
        th = s.get("threshold") or {}
        eps = th.get("eps") if th.get("kind") == "relative" else "absolute"
        rows.append(
            f"| {s['dataset']} | {s['preprocessing']} | {eps} | {s['depths'][0]}–{s['depths'][-1]} | **{rate_verdict(s)}**: "
            f"{g(s['lr_exponent'])}{ci(s['lr_exponent_ci'])} ({g(s.get('theory_lr_exponent'))}) | **{saturation_verdict(s)}**: "
            f"{g(s['learning_time_late_slope'])}{ci(s['learning_time_late_slope_ci'])} ({g(s.get('theory_learning_time_late_slope'))}) "
            f"| {s.get('ensemble', 1)} | `{name}` |")
    return rows
