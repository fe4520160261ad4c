"""Redaction of secret-looking argument and environment values before they leave the host (pure).

Arguments: values of secret flags, ``KEY=value`` pairs and environment assignments with secret-looking
names (``PGPASSWORD=...``), credentials in URLs and DSNs, authorization and API-key headers, bearer
tokens, AWS keys, known token formats; and the options of tools that take a password in their own way
(``mysql -pSECRET``, ``sshpass -p SECRET``, ``curl -u user:SECRET``), also inside ``sh -c`` strings.
Environment: the value of an allow-listed variable whose name looks secret (``*TOKEN*``, ``*SECRET*``,
``*PASSWORD*``, ``*KEY*``, ...) is replaced whole; others go through the argument rules (a DSN keeps its
user and host, loses its password).
"""

from __future__ import annotations

import re
from functools import lru_cache

MASK = "<redacted>"

# Flags whose value (``--flag=value`` or the next argument) is a secret.
_SECRET_NAMES = (
    r"pass(?:word|wd|phrase)?|secret|token|api[-_]?key|apikey|access[-_]?key|secret[-_]?key|"
    r"private[-_]?key|auth|authorization|credentials?|session[-_]?token|client[-_]?secret|"
    r"aws[-_]?secret[-_]?access[-_]?key|aws[-_]?session[-_]?token|pwd"
)
_FLAG_EQ = re.compile(rf"^(-{{1,2}}(?:[\w-]*[-_])?(?:{_SECRET_NAMES}))=(.+)$", re.IGNORECASE)
_FLAG_ALONE = re.compile(rf"^-{{1,2}}(?:[\w-]*[-_])?(?:{_SECRET_NAMES})$", re.IGNORECASE)
_KEY_EQ = re.compile(rf"((?:^|[?&;\s,])(?:[\w.-]*[-_.])?(?:{_SECRET_NAMES})=)([^&;\s,]+)", re.IGNORECASE)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
# userinfo up to the last '@' of the word: a password may hold '/', ':' or '@'
_URL_CREDS = re.compile(r"(://[^/\s:@'\"]*:)([^\s'\"]*)(@)")
# NAME=value in an environment assignment (``env PGPASSWORD=x psql``, ``sh -c "MYSQL_PWD=x mysql"``)
_ENV_ASSIGN = re.compile(
    r"((?:^|[\s;&|(])[A-Z0-9_]*(?:PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|"
    r"CREDENTIALS?|_PWD|_PASS|AUTH)[A-Z0-9_]*=)('[^']*'|\"[^\"]*\"|[^\s;&|)]+)"
)
# HTTP headers that carry credentials (the auth scheme word is kept)
_HEADER = re.compile(
    r"((?:proxy-)?authorization\s*:\s*(?:(?:bearer|basic|token|digest|negotiate|aws4-hmac-sha256)\s+)?|"
    r"(?:x-)?api[-_]?key\s*:\s*|x-auth-token\s*:\s*|private-token\s*:\s*|x-amz-security-token\s*:\s*|"
    r"cookie\s*:\s*)([^\s'\"][^'\"\n]*)",
    re.IGNORECASE,
)
# tools that take a password their own way, inside a shell string (``sh -c "mysql -pX db"``)
_SHELL_TOOL = re.compile(
    r"(\b(?:mysql\w*|mariadb[\w-]*)\b[^;&|\n]*?\s-p)([^\s'\";&|]+)|"
    r"(\bsshpass\b[^;&|\n]*?\s-p\s*)([^\s'\";&|]+)|"
    r"(\bcurl\b[^;&|\n]*?\s(?:-u\s*|--user[\s=]+|--proxy-user[\s=]+)['\"]?[^\s:'\"]*:)([^\s'\";&|]+)"
)
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
    out = _ENV_ASSIGN.sub(lambda mm: mm.group(1) + MASK, out)
    out = _URL_CREDS.sub(lambda mm: mm.group(1) + MASK + mm.group(3), out)
    out = _HEADER.sub(lambda mm: mm.group(1) + MASK, out)
    out = _BEARER.sub(lambda mm: mm.group(1) + MASK, out)
    if " " in out and _SHELL_TOOL.search(out):
        out = _SHELL_TOOL.sub(_shell_tool_mask, out)
    out = _AWS_KEY_ID.sub(MASK, out)
    out = _KNOWN_TOKENS.sub(MASK, out)
    out = _AWS_SECRET.sub(lambda mm: MASK if _looks_like_aws_secret(mm.group(0)) else mm.group(0), out)
    return out


def _shell_tool_mask(m: re.Match[str]) -> str:
    for i in (1, 3, 5):
        if m.group(i) is not None:
            return m.group(i) + MASK
    return m.group(0)


# program (basename) -> its options whose value is a secret: "attached" (-pSECRET) and "next" (-p SECRET)
_MYSQL_LIKE = frozenset({"mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlshow", "mysqlcheck", "mysqlpump",
                         "mysqlbinlog", "mysqlsh", "mariadb", "mariadb-dump", "mariadb-admin", "mariadb-import",
                         "mariadb-check", "mariadb-show"})
_USERPASS_OPTS = {"curl": ("-u", "--user", "--proxy-user", "-U"), "wget": (), "lftp": ("-u",)}


def _program(argv: list[str] | tuple[str, ...]) -> str:
    return argv[0].rsplit("/", 1)[-1] if argv else ""


def _tool_rules(prog: str, argv: list[str] | tuple[str, ...], out: list[str]) -> None:
    """Options of known tools that carry a password outside the ``--flag=value`` convention."""
    if prog in _MYSQL_LIKE:
        for i, arg in enumerate(argv[1:], 1):
            if arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
                out[i] = "-p" + MASK  # -pSECRET; a lone -p prompts
    elif prog == "sshpass":
        for i, arg in enumerate(argv[1:], 1):
            if arg == "-p" and i + 1 < len(argv):
                out[i + 1] = MASK
                break
            if arg.startswith("-p") and len(arg) > 2:
                out[i] = "-p" + MASK
                break
            if not arg.startswith("-"):
                break  # the command sshpass runs: its options are its own
    elif prog in _USERPASS_OPTS:
        opts = _USERPASS_OPTS[prog]
        for i, arg in enumerate(argv[1:], 1):
            value_at = None
            if arg in opts and i + 1 < len(argv):
                value_at, value = i + 1, argv[i + 1]
                prefix = ""
            elif any(arg.startswith(o + "=") for o in opts if o.startswith("--")):
                value_at, (prefix, value) = i, (arg.split("=", 1)[0] + "=", arg.split("=", 1)[1])
            elif any(arg.startswith(o) and len(arg) > len(o) for o in opts if not o.startswith("--")):
                value_at, prefix, value = i, arg[:2], arg[2:]
            if value_at is not None:
                user, sep, _password = value.partition(":")
                out[value_at] = prefix + (user + ":" + MASK if sep else value)


def redact_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """Redacts values of secret flags (``--password=x``, ``--token x``), ``key=value`` pairs and secret
    environment assignments, credentials in URLs, authorization headers, bearer tokens, AWS access key
    ids and secret keys, known token formats, and the password options of known tools."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = bool(_FLAG_ALONE.match(arg))
        out.append(redact_arg(arg))
    prog = _program(argv)
    if prog in _MYSQL_LIKE or prog == "sshpass" or prog in _USERPASS_OPTS:
        _tool_rules(prog, argv, out)
    return out


_SECRET_ENV_NAME = re.compile(
    r"TOKEN|SECRET|PASSW(?:OR)?D|PASSPHRASE|KEY|CREDENTIAL|AUTH|_PWD$|_PASS$|COOKIE|SESSION", re.IGNORECASE
)


@lru_cache(maxsize=1024)
def secret_env_name(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret (NXF_TOWER_TOKEN, ..._KEY)."""
    return bool(_SECRET_ENV_NAME.search(name))


def redact_env_value(name: str, value: str) -> str:
    """The value of an (allow-listed) environment variable as it may leave the host."""
    if secret_env_name(name):
        return MASK if value else value
    return redact_arg(value)


def redact_env(env: dict[str, str]) -> dict[str, str]:
    return {k: redact_env_value(k, v) for k, v in env.items()}
