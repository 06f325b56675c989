"""The fault and bad-input cases the reliability tests tried, and what happened in each.

A test calls ``record`` after its assertions passed, so a recorded case is one whose outcome was
checked. ``pytest tests/reliability --reliability-out FILE`` writes the recorded cases as JSON; the
committed ``docs/reliability.json`` is such a run, and ``docs/reliability.md`` is rendered from it
(``python -m tests.reliability.report``).

Outcomes (what the test asserts):
- ``clear error``: the run stopped with one line naming the thing at fault (the artifact, file, key,
  config field or input), exit code non-zero, no traceback; nothing was published from it;
- ``recovered``: the fault was absorbed: a rerun after a kill published the same sha256s as an
  uninterrupted run, or a second builder waited and reused the first one's result.
The other columns of the table count what no test may end in: a traceback, a silently wrong result
(something published from bad input), or data loss (a stored artifact changed or gone).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

OUTCOMES = ("clear error", "recovered")


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    outcome: str
    detail: str = ""


RECORDED: list[Case] = []


def record(group: str, name: str, outcome: str, detail: str = "") -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r}: expected one of {OUTCOMES}")
    RECORDED.append(Case(group, name, outcome, detail))


def as_json() -> list[dict[str, str]]:
    return [asdict(c) for c in sorted(set(RECORDED), key=lambda c: (c.group, c.name))]
