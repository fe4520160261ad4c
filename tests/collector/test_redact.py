from __future__ import annotations

import pytest

from execsight.collector.procfs import filter_environ
from execsight.collector.redact import MASK, redact_argv, redact_env


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
        (["env", "PGPASSWORD=pgs3cret", "psql"], ["env", f"PGPASSWORD={MASK}", "psql"]),
        (["sh", "-c", "PGPASSWORD=pgs3cret psql -h db"], ["sh", "-c", f"PGPASSWORD={MASK} psql -h db"]),
        (["mysql", "-uroot", "-phunter2", "db"], ["mysql", "-uroot", f"-p{MASK}", "db"]),
        (["/usr/bin/mysqldump", "-phunter2"], ["/usr/bin/mysqldump", f"-p{MASK}"]),
        (["sshpass", "-p", "s3cret", "ssh", "h"], ["sshpass", "-p", MASK, "ssh", "h"]),
        (["sshpass", "-ps3cret", "ssh", "h"], ["sshpass", f"-p{MASK}", "ssh", "h"]),
        (["gpg", "--passphrase=pp", "-d"], ["gpg", f"--passphrase={MASK}", "-d"]),
        (["gpg", "--passphrase", "pp", "-d"], ["gpg", "--passphrase", MASK, "-d"]),
        (["curl", "-H", "X-Api-Key: k3y", "u"], ["curl", "-H", f"X-Api-Key: {MASK}", "u"]),
        (["curl", "-H", "Authorization: Basic dXNlcjpwYXNz"], ["curl", "-H", f"Authorization: Basic {MASK}"]),
        (["curl", "-u", "bob:pw", "u"], ["curl", "-u", f"bob:{MASK}", "u"]),
        (["curl", "-ubob:pw"], ["curl", f"-ubob:{MASK}"]),
        (["curl", "--user=bob:pw"], ["curl", f"--user=bob:{MASK}"]),
        (["sh", "-c", "curl -u bob:pw -H 'X-Api-Key: k3y' u && mysql -pm1 db; sshpass -p s2 ssh h"],
         ["sh", "-c", f"curl -u bob:{MASK} -H 'X-Api-Key: {MASK}' u && mysql -p{MASK} db; sshpass -p {MASK} ssh h"]),
        (["psql", "postgresql://u:p@ss/w:rd@db:5432/x"], ["psql", f"postgresql://u:{MASK}@db:5432/x"]),
        (["psql", "host=db password=dsnpw user=u"], ["psql", f"host=db password={MASK} user=u"]),
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
        ["ls", "-p", "/tmp"],
        ["mkdir", "-p", "/data/out"],
        ["curl", "-o", "out", "https://example.org/x"],
        ["sh", "-c", "mkdir -p out && cp -p a b"],
    ],
)
def test_ordinary_arguments_are_kept(argv: list[str]) -> None:
    assert redact_argv(argv) == argv


def test_secret_looking_environment_values_are_redacted() -> None:
    env = {"NXF_TOWER_TOKEN": "tok", "EXECSIGHT_API_TOKEN": "t2", "NXF_SECRET_X": "s",
           "EXECSIGHT_DATABASE_URL": "postgresql://execsight:pw@127.0.0.1:5432/execsight",
           "NXF_TASK_WORKDIR": "/w", "SNAKEMAKE_RULE": "align", "EXECSIGHT_KEY_FILE": "k"}
    assert redact_env(env) == {
        "NXF_TOWER_TOKEN": MASK, "EXECSIGHT_API_TOKEN": MASK, "NXF_SECRET_X": MASK,
        "EXECSIGHT_DATABASE_URL": f"postgresql://execsight:{MASK}@127.0.0.1:5432/execsight",
        "NXF_TASK_WORKDIR": "/w", "SNAKEMAKE_RULE": "align", "EXECSIGHT_KEY_FILE": MASK}


def test_environment_blocks_are_redacted_as_they_are_read() -> None:
    raw = b"HOME=/root\0NXF_TOWER_TOKEN=tok\0EXECSIGHT_DATABASE_URL=postgresql://a:pw@h/d\0NXF_CLI=nf run\0"
    assert filter_environ(raw) == {"NXF_TOWER_TOKEN": MASK, "EXECSIGHT_DATABASE_URL": f"postgresql://a:{MASK}@h/d",
                                   "NXF_CLI": "nf run"}
