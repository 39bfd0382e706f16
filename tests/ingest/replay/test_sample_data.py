"""sample_data/ is what its README and SHA256SUMS say: every file listed, every
checksum right, every file described (with provenance) in the README."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ingest.replay.tapes import book_sample_files, default_sample_files

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data"
NOT_DATA = {"README.md", "SHA256SUMS"}


def _sums() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (SAMPLE / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            assert name not in out, f"{name} listed twice"
            out[name] = digest
    return out


def test_every_sample_file_is_listed_and_its_checksum_holds() -> None:
    sums = _sums()
    files = {p.name for p in SAMPLE.iterdir() if p.is_file() and p.name not in NOT_DATA}
    assert set(sums) == files
    for name, digest in sums.items():
        assert hashlib.sha256((SAMPLE / name).read_bytes()).hexdigest() == digest, name


def test_every_sample_file_is_described_in_the_readme() -> None:
    readme = (SAMPLE / "README.md").read_text()
    for name in _sums():
        assert f"`{name}`" in readme, name


def test_bundled_replay_files_are_in_sample_data() -> None:
    listed = _sums()
    for path in default_sample_files() + default_sample_files("spot") + book_sample_files():
        assert path.parent == SAMPLE and path.name in listed
    # the book captures stay small enough to commit (the brief: ~2.5 MB in all)
    assert sum(p.stat().st_size for p in book_sample_files()) < 2_500_000
