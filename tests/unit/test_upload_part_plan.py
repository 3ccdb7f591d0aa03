"""How completing an upload maps its parts onto one S3 multipart upload (`blobs.plan_parts`): parts big enough are
copied inside S3; only pieces under S3's minimum part size are read through the API, and never more than needed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from functions.store.blobs import MIN_PART, Segment, plan_parts, read_through_bytes

MiB = 1024 * 1024


def test_parts_of_at_least_5_mib_are_each_copied_whole_in_the_given_order() -> None:
    plan = plan_parts([("b", 6 * MiB), ("a", 5 * MiB), ("c", 1)])
    assert plan == [[Segment("b", 0, 6 * MiB)], [Segment("a", 0, 5 * MiB)], [Segment("c", 0, 1)]]
    assert read_through_bytes(plan) == 0


def test_a_single_small_part_is_copied_since_the_last_part_may_be_any_size() -> None:
    assert plan_parts([("only", 10)]) == [[Segment("only", 0, 10)]]


def test_small_parts_of_a_small_upload_are_joined_into_one_part() -> None:
    plan = plan_parts([("a", 100), ("b", 200), ("c", 50)])
    assert plan == [[Segment("a", 0, 100), Segment("b", 0, 200), Segment("c", 0, 50)]]
    assert read_through_bytes(plan) == 350


def test_a_small_part_first_borrows_only_what_it_needs_from_a_big_neighbour() -> None:
    # Given 1 MiB, then 64 MiB: the join takes 4 MiB of the big part; its other 60 MiB are still copied.
    plan = plan_parts([("small", MiB), ("big", 64 * MiB), ("tail", 3)])
    assert plan == [
        [Segment("small", 0, MiB), Segment("big", 0, MIN_PART - MiB)],
        [Segment("big", MIN_PART - MiB, 64 * MiB)],
        [Segment("tail", 0, 3)],
    ]
    assert read_through_bytes(plan) == MIN_PART


def test_a_neighbour_whose_rest_would_be_too_small_is_joined_whole() -> None:
    plan = plan_parts([("small", MiB), ("mid", 6 * MiB), ("tail", 3)])
    assert plan == [[Segment("small", 0, MiB), Segment("mid", 0, 6 * MiB)], [Segment("tail", 0, 3)]]


def test_the_last_part_keeps_a_short_rest_as_a_copy() -> None:
    plan = plan_parts([("small", MiB), ("last", 6 * MiB)])
    assert plan == [[Segment("small", 0, MiB), Segment("last", 0, 4 * MiB)], [Segment("last", 4 * MiB, 6 * MiB)]]


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_parts_give_s3_valid_parts_that_hold_every_byte_in_order(sizes: list[int]) -> None:
    minimum = 10
    sources = [(f"p{i}", size) for i, size in enumerate(sizes)]
    plan = plan_parts(sources, min_part=minimum)
    # Every byte once, in order: the segments walk each source from 0 to its end, source after source.
    segments = [seg for part in plan for seg in part]
    keys = [key for key, _ in sources]
    position = dict.fromkeys(keys, 0)
    order: list[str] = []
    for seg in segments:
        assert seg.start == position[seg.key] and seg.end > seg.start
        position[seg.key] = seg.end
        if not order or order[-1] != seg.key:
            order.append(seg.key)
    assert order == keys and position == dict(sources)
    # S3's rule, and the bound on what is read through: joins stay under twice the minimum.
    assert all(sum(seg.size for seg in part) >= minimum for part in plan[:-1])
    assert all(sum(seg.size for seg in part) < 2 * minimum for part in plan if len(part) > 1)
    # A source of twice the minimum or more is never read beyond the few bytes a join borrows from its front.
    read = {key: 0 for key in keys}
    for part in plan:
        if len(part) > 1:
            for seg in part:
                read[seg.key] += seg.size
    assert all(read[key] < minimum for key, size in sources if size >= 2 * minimum)
    assert read_through_bytes(plan) == sum(read.values())
