"""Seeded synthetic genomics inputs for the demo: a reference FASTA and single-end FASTQ reads.

Pure Python and standard library only, so the Snakefile can run it with any interpreter
(`python3 synthetic.py reference|reads ...`). The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

BASES = "ACGT"
_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def reference_contigs(seed: int, length: int, contigs: int) -> list[tuple[str, str]]:
    """`contigs` random contigs of `length // contigs` bases each, named chr1..chrN."""
    if length <= 0 or contigs <= 0:
        raise ValueError("length and contigs must be positive")
    rng = random.Random(seed)
    size = max(1, length // contigs)
    return [(f"chr{i + 1}", "".join(rng.choices(BASES, k=size))) for i in range(contigs)]


def write_fasta(records: list[tuple[str, str]], out: TextIO, width: int = 60) -> None:
    for name, seq in records:
        out.write(f">{name}\n")
        for i in range(0, len(seq), width):
            out.write(seq[i : i + width] + "\n")


def read_fasta(path: Path) -> list[tuple[str, str]]:
    records: list[tuple[str, str]] = []
    name: str | None = None
    chunks: list[str] = []
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(chunks)))
                name, chunks = line[1:].split()[0], []
            elif line:
                chunks.append(line)
    if name is not None:
        records.append((name, "".join(chunks)))
    if not records:
        raise ValueError(f"{path}: no FASTA records")
    return records


def simulate_reads(
    records: list[tuple[str, str]], seed: int, count: int, length: int, error_rate: float = 0.01
) -> Iterator[tuple[str, str, str]]:
    """(name, sequence, quality) for `count` reads sampled from both strands with substitution errors."""
    rng = random.Random(seed)
    usable = [(n, s) for n, s in records if len(s) >= length]
    if not usable:
        raise ValueError(f"no contig is at least {length} bases long")
    weights = [len(s) for _, s in usable]
    qualities = ["".join(chr(33 + rng.randint(25, 40)) for _ in range(length)) for _ in range(64)]
    for i in range(count):
        name, seq = rng.choices(usable, weights=weights)[0]
        start = rng.randrange(0, len(seq) - length + 1)
        frag = seq[start : start + length]
        if rng.random() < 0.5:
            frag = frag.translate(_COMPLEMENT)[::-1]
        bases = list(frag)
        j = _next_error(rng, error_rate, -1)
        while j < length:
            bases[j] = rng.choice([b for b in BASES if b != bases[j]])
            j = _next_error(rng, error_rate, j)
        yield f"r{i}_{name}_{start}", "".join(bases), rng.choice(qualities)


def _next_error(rng: random.Random, rate: float, after: int) -> int:
    """Position of the next substitution after `after` (geometric gaps: one draw per error, not per base)."""
    if rate <= 0:
        return sys.maxsize
    return after + 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - rate))


def write_fastq(reads: Iterator[tuple[str, str, str]], out: TextIO) -> int:
    n = 0
    for name, seq, qual in reads:
        out.write(f"@{name}\n{seq}\n+\n{qual}\n")
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    ref = sub.add_parser("reference", help="write a reference FASTA to stdout")
    ref.add_argument("--seed", type=int, required=True)
    ref.add_argument("--length", type=int, required=True)
    ref.add_argument("--contigs", type=int, default=1)
    reads = sub.add_parser("reads", help="write FASTQ reads sampled from a reference to stdout")
    reads.add_argument("--reference", type=Path, required=True)
    reads.add_argument("--seed", type=int, required=True)
    reads.add_argument("--count", type=int, required=True)
    reads.add_argument("--length", type=int, default=100)
    args = parser.parse_args(argv)
    if args.what == "reference":
        write_fasta(reference_contigs(args.seed, args.length, args.contigs), sys.stdout)
    else:
        write_fastq(simulate_reads(read_fasta(args.reference), args.seed, args.count, args.length), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
