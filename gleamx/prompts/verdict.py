"""The verdict line and its parser: defined in :mod:`gleamx.data.verdict` (the data layer checks that an
explanation's verdict agrees with its label), re-exported here under the prompts' name."""

from gleamx.data.verdict import VERDICT_LINES, parse_verdict, strip_verdict, verdict_line

__all__ = ["VERDICT_LINES", "parse_verdict", "strip_verdict", "verdict_line"]
