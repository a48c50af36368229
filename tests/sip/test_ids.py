"""Random identifiers: the right size, hex, and never repeated across the batches they
are cut from (branches and tags must be unique)."""

from __future__ import annotations

from opentrunk.sip import ids
from opentrunk.sip.dialog import new_tag
from opentrunk.sip.transaction import MAGIC_COOKIE, new_branch


def test_sizes_and_alphabet() -> None:
    for nbytes in (1, 2, 8, 12, 16):
        value = ids.random_hex(nbytes)
        assert len(value) == 2 * nbytes
        int(value, 16)  # hex only
    assert len(new_tag()) == 16
    branch = new_branch()
    assert branch.startswith(MAGIC_COOKIE) and len(branch) == len(MAGIC_COOKIE) + 24


def test_unique_across_batch_refills() -> None:
    # Several times the batch size: identifiers straddle refills and never repeat.
    count = 3 * ids._BATCH // 12 + 7
    branches = {new_branch() for _ in range(count)}
    assert len(branches) == count
    tags = {new_tag() for _ in range(count)}
    assert len(tags) == count
