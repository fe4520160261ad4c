"""Redaction of secret-looking argument values before they leave the host (pure)."""

from __future__ import annotations

import re
from functools import lru_cache

MASK = "<redacted>"

# Flags whose value (``--flag=value`` or the next argument) is a secret.
_SECRET_NAMES = (
    r"pass(?:word|wd)?|secret|token|api[-_]?key|apikey|access[-_]?key|secret[-_]?key|"
    r"private[-_]?key|auth|authorization|credentials?|session[-_]?token|client[-_]?secret|"
    r"aws[-_]?secret[-_]?access[-_]?key|aws[-_]?session[-_]?token|pwd"
)
_FLAG_EQ = re.compile(rf"^(-{{1,2}}(?:[\w-]*[-_])?(?:{_SECRET_NAMES}))=(.+)$", re.IGNORECASE)
_FLAG_ALONE = re.compile(rf"^-{{1,2}}(?:[\w-]*[-_])?(?:{_SECRET_NAMES})$", re.IGNORECASE)
_KEY_EQ = re.compile(rf"((?:^|[?&;\s,])(?:[\w.-]*[-_.])?(?:{_SECRET_NAMES})=)([^&;\s,]+)", re.IGNORECASE)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_URL_CREDS = re.compile(r"(://[^/\s:@]+:)([^@/\s]+)(@)")
_BEARER = re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_KNOWN_TOKENS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|xox[abpr]-[A-Za-z0-9-]{10,}|"
    r"sk-[A-Za-z0-9_-]{20,}|glpat-[A-Za-z0-9_-]{20,})\b"
)


def _looks_like_aws_secret(s: str) -> bool:
    return any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)


MEMO_MAX_LEN = 256  # arguments up to this length are memoised (pipelines repeat their arguments)


def redact_arg(arg: str) -> str:
    return _redact_arg_memo(arg) if len(arg) <= MEMO_MAX_LEN else _redact_arg(arg)


@lru_cache(maxsize=8192)
def _redact_arg_memo(arg: str) -> str:
    return _redact_arg(arg)


def _redact_arg(arg: str) -> str:
    m = _FLAG_EQ.match(arg)
    if m:
        return f"{m.group(1)}={MASK}"
    out = _KEY_EQ.sub(lambda mm: mm.group(1) + MASK, arg)
    out = _URL_CREDS.sub(lambda mm: mm.group(1) + MASK + mm.group(3), out)
    out = _BEARER.sub(lambda mm: mm.group(1) + MASK, out)
    out = _AWS_KEY_ID.sub(MASK, out)
    out = _KNOWN_TOKENS.sub(MASK, out)
    out = _AWS_SECRET.sub(lambda mm: MASK if _looks_like_aws_secret(mm.group(0)) else mm.group(0), out)
    return out


def redact_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """Redacts values of secret flags (``--password=x``, ``--token x``), ``key=value`` pairs,
    credentials in URLs, bearer tokens, AWS access key ids and secret keys, known token formats."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = bool(_FLAG_ALONE.match(arg))
        out.append(redact_arg(arg))
    return out
