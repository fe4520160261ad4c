from __future__ import annotations

import pytest

from services.collector.redact import MASK, redact_argv


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["mysql", "--password=hunter2", "-u", "bob"], ["mysql", f"--password={MASK}", "-u", "bob"]),
        (["cli", "--token", "abc123", "--verbose"], ["cli", "--token", MASK, "--verbose"]),
        (["cli", "--api-key=xyz"], ["cli", f"--api-key={MASK}"]),
        (["curl", "https://h/x?token=abc&n=1"], ["curl", f"https://h/x?token={MASK}&n=1"]),
        (["aws", "AKIAIOSFODNN7EXAMPLE"], ["aws", MASK]),
        (["env", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
         ["env", f"AWS_SECRET_ACCESS_KEY={MASK}"]),
        (["x", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"], ["x", MASK]),
        (["git", "clone", "https://user:s3cret@github.com/r.git"], ["git", "clone", f"https://user:{MASK}@github.com/r.git"]),
        (["x", "-H", "Authorization: Bearer abc.def.ghi"], ["x", "-H", f"Authorization: Bearer {MASK}"]),
        (["x", "ghp_" + "a" * 36], ["x", MASK]),
    ],
)
def test_secrets_are_redacted(argv: list[str], want: list[str]) -> None:
    assert redact_argv(argv) == want


@pytest.mark.parametrize(
    "argv",
    [
        ["bwa", "mem", "-t", "8", "ref.fa", "r1.fq"],
        ["samtools", "sort", "-o", "out.bam", "in.bam"],
        ["python", "script.py", "--passes=3", "--tokenizer", "bpe"],
        ["sha1sum", "da39a3ee5e6b4b0d3255bfef95601890afd80709"],
    ],
)
def test_ordinary_arguments_are_kept(argv: list[str]) -> None:
    assert redact_argv(argv) == argv
