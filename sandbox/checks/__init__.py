"""Lint a loaded profile for hardening problems: stable rule ids, severities, positions, a score.

Pure: works on a ``Profile`` and the ``Policy`` it lowers to.  Whether a
syscall is allowed is decided by evaluating the policy (``bpf_filters.ir.evaluate``)
over argument values drawn from the rules' own conditions, never by matching
names in the YAML, so ``extends``, groups, rule order and conditions all count:
``clone`` is reported only if some call carrying CLONE_NEWUSER reaches an
allowing rule.  Every finding is a ``Diagnostic`` whose position is the name
(or ``@group``) in the rule that allows the thing, the ``default:``/``unknown:``
value that does, or the profile's first line when something is missing.
The rule table and the score formula are documented in docs/checks.md.
"""
from .registry import BY_ID, CHECKS, PENALTY, RANK, SEVERITIES, Check, Finding, finding
from .score import EXPOSURE_WEIGHT, Report, at_or_above, check_profile, compare, exposure, score
from .vectors import allowing, decisions, surface

__all__ = ["BY_ID", "CHECKS", "PENALTY", "RANK", "SEVERITIES", "Check", "Finding", "finding",
           "EXPOSURE_WEIGHT", "Report", "at_or_above", "check_profile", "compare", "exposure", "score",
           "allowing", "decisions", "surface"]
