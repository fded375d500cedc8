from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ftcli.data.digests import Digests, file_digests


@settings(max_examples=50, deadline=None)
@given(blocks=st.lists(st.binary(max_size=5000), max_size=8), md5=st.booleans())
def test_digests_fed_block_by_block_equal_hashlibs_of_the_whole(blocks: list[bytes], md5: bool) -> None:
    whole = b"".join(blocks)
    with Digests(md5=md5) as digests:
        for block in blocks:
            digests.update(block)
        sha, md5_hex = digests.hexdigests()
    assert sha == hashlib.sha256(whole).hexdigest()
    assert md5_hex == (hashlib.md5(whole, usedforsecurity=False).hexdigest() if md5 else None)


def test_file_digests_of_a_file_larger_than_its_read_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 20_000  # 5 MB: five 1 MB reads and a tail
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_digests(path, md5=True) == (
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
    )
    assert file_digests(path) == (hashlib.sha256(data).hexdigest(), None)
