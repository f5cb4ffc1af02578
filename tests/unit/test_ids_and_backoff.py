"""Customer references, opaque ids, and the job retry backoff."""

from __future__ import annotations

import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from ulid import ULID

from refunddesk.core.ids import REFERENCE_LENGTH, new_id, new_reference, normalize_reference
from refunddesk.jobs.queue import backoff

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE = re.compile(rf"^RF-[{CROCKFORD}]{{8}}$")


def test_a_reference_is_rf_dash_eight_crockford_characters() -> None:
    references = [new_reference() for _ in range(2000)]
    assert REFERENCE_LENGTH == 8
    assert all(REFERENCE.match(r) for r in references), references[:5]
    # none of the letters that read like others
    assert not set("".join(references)[3:]) & set("ILOU")
    # 40 bits of randomness: 2000 draws do not collide
    assert len(set(references)) == len(references)


def test_a_reference_can_carry_another_prefix() -> None:
    assert re.match(rf"^RT-[{CROCKFORD}]{{8}}$", new_reference("RT"))


def test_ids_are_26_character_ulids_that_sort_by_creation() -> None:
    ids = [new_id() for _ in range(50)]
    assert all(len(i) == 26 for i in ids)
    assert len(set(ids)) == 50
    assert [i[:10] for i in ids] == sorted(i[:10] for i in ids)  # time part is monotonic


def test_an_id_is_a_ulid_that_python_ulid_reads_back_with_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    for value in ids:
        parsed = ULID.from_str(value)
        assert str(parsed) == value
        assert before <= parsed.milliseconds <= after
    # the 80 random bits differ: no two ids share their random part
    assert len({ULID.from_str(v).bytes[6:] for v in ids}) == len(ids)


@pytest.mark.parametrize(
    "typed",
    [
        "RF-7K2M9Q0A",
        "rf-7k2m9q0a",
        "RF7K2M9Q0A",
        "rf7k2m9q0a",
        "  RF-7K2M9Q0A  ",
        "RF-7K2M9QOA",  # letter O for zero
        "rf 7k2m 9qoa",
    ],
)
def test_normalize_reference_accepts_what_customers_type(typed: str) -> None:
    assert normalize_reference(typed) == "RF-7K2M9Q0A"


def test_normalize_reference_reads_i_and_l_as_one() -> None:
    assert normalize_reference("rf-i1l00000") == "RF-11100000"


def test_every_new_reference_survives_normalization_unchanged() -> None:
    for _ in range(500):
        reference = new_reference()
        assert normalize_reference(reference) == reference
        assert normalize_reference(reference.lower().replace("-", "")) == reference


def test_backoff_doubles_per_attempt_within_equal_jitter_bounds() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (6, 64.0)]:
        for _ in range(200):
            delay = backoff(attempt, base=2.0, cap=3600.0, rng=rng)
            assert ceiling / 2 <= delay <= ceiling


def test_backoff_never_exceeds_the_cap_however_many_attempts() -> None:
    rng = random.Random(7)
    for attempt in range(1, 200):
        delay = backoff(attempt, base=2.0, cap=60.0, rng=rng)
        assert delay <= 60.0
        if attempt >= 6:  # 2 * 2**5 = 64 > 60: capped from here on
            assert delay >= 30.0


def test_backoff_grows_on_average_until_the_cap() -> None:
    def mean(attempt: int) -> float:
        rng = random.Random(attempt)
        return sum(backoff(attempt, base=1.0, cap=100.0, rng=rng) for _ in range(500)) / 500

    means = [mean(a) for a in range(1, 8)]
    assert means == sorted(means)
    assert 0.5 <= means[0] <= 1.0
    assert 50.0 <= mean(50) <= 100.0


def test_backoff_treats_attempt_zero_like_the_first_attempt() -> None:
    assert 1.0 <= backoff(0, base=2.0, cap=10.0, rng=random.Random(1)) <= 2.0


def test_backoff_jitter_spreads_a_burst_of_failures() -> None:
    rng = random.Random(3)
    delays = {backoff(5, base=2.0, cap=3600.0, rng=rng) for _ in range(100)}
    assert len(delays) > 90


def test_threads_and_a_forked_child_never_draw_the_same_random_bits() -> None:
    # Random bits are read ahead per thread; a child must not replay its parent's buffer.
    new_id()  # this thread's buffer is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "".join(new_id() for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(20)]
    child_ids = [child[i : i + 26] for i in range(0, len(child), 26)]
    assert len(child_ids) == 20
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda _: new_id(), range(4000)))
    randoms = [ULID.from_str(v).bytes[6:] for v in parent + child_ids + threaded]
    assert len(set(randoms)) == len(randoms)
