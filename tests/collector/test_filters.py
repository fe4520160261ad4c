from __future__ import annotations

from pathlib import Path

import pytest

from execsight.collector.filters import ExecRateLimiter, RulesError, load_rules, parse_rules


def test_rules_include_exclude() -> None:
    r = parse_rules("include:\n  exe: ['^/opt/']\nexclude:\n  exe: ['/sleep$']\n  container: ['^abc']\n")
    assert r.wants("/opt/bin/bwa", None, None)
    assert not r.wants("/usr/bin/bwa", None, None)
    assert not r.wants("/opt/bin/sleep", None, None)
    assert not r.wants("/opt/bin/bwa", "/docker/abc", "abcdef")
    assert parse_rules("").wants("/anything", None, None)


def test_rate_limit_parsed() -> None:
    r = parse_rules("rate_limit:\n  execs_per_s: 10\n  burst: 20\nignore_self: false\n")
    assert (r.execs_per_s, r.burst, r.ignore_self) == (10.0, 20.0, False)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("include:\n  exe: ['^/opt/']\nexclud:\n  exe: []\n", 3, "unknown key 'exclud'"),
        ("exclude:\n  exe: ['(unclosed']\n", 2, "bad regular expression"),
        ("rate_limit:\n  execs_per_s: -3\n", 2, "positive number"),
        ("ignore_self: maybe\n", 1, "true or false"),
        ("include:\n  exe: '^/opt/'\n", 2, "must be a list"),
        ("include: [\n", 2, "invalid YAML"),
    ],
)
def test_bad_rules_name_file_line_and_problem(tmp_path: Path, text: str, line: int, problem: str) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    with pytest.raises(RulesError) as exc:
        load_rules(f)
    msg = str(exc.value)
    assert msg.startswith(f"{f}:{line}:"), msg
    assert problem in msg


def test_rate_limiter_counts_and_summarises() -> None:
    lim = ExecRateLimiter(rate_per_s=10, burst=5)
    t = 1_000_000_000
    allowed = sum(lim.allow(7, t) for _ in range(20))
    assert allowed == 5
    assert lim.allow(8, t)  # per cgroup
    t += 500_000_000  # half a second refills 5 tokens
    assert sum(lim.allow(7, t) for _ in range(10)) == 5
    summary = lim.flush(t)
    assert summary == [(7, 500_000_000, 20)]
    assert lim.flush(t) == []
    assert lim.total_suppressed == 20
