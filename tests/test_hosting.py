import threading

import pytest

from wlm.errors import WlmError
from wlm.hosting import (
    MAX_SWEEP_TOKENS,
    MAX_TOKENS,
    PATH_NOTE,
    SourceChoice,
    TimingLock,
    TokenBudget,
    choose_source,
    clamp_tokens,
    hosted_mode,
    offered_sources,
)

SOURCES = {"bundled": "Bundled model", "path": "A .pth file by path", "upload": "Upload a checkpoint"}


@pytest.mark.parametrize("value, hosted", [("1", True), ("true", True), ("Yes", True), (" on ", True),
                                           ("0", False), ("", False), ("false", False), ("OFF", False)])
def test_hosted_mode_values(value, hosted):
    assert hosted_mode({"WLM_HOSTED": value}) is hosted


def test_hosted_mode_unset_is_a_laptop_and_a_typo_is_refused():
    assert hosted_mode({}) is False
    with pytest.raises(WlmError, match="WLM_HOSTED='maybe'"):
        hosted_mode({"WLM_HOSTED": "maybe"})


def test_clamp_tokens():
    assert clamp_tokens(1_000) == TokenBudget(1_000, False, "")
    big = clamp_tokens(245_569)
    assert big.tokens == MAX_TOKENS and big.clamped and "245,569" in big.note and f"{MAX_TOKENS:,}" in big.note
    assert clamp_tokens(MAX_TOKENS).clamped is False
    sweep = clamp_tokens(10_000, MAX_SWEEP_TOKENS)
    assert sweep.tokens == MAX_SWEEP_TOKENS <= MAX_TOKENS and sweep.clamped


def test_path_source_only_on_a_laptop():
    assert list(offered_sources(SOURCES, hosted=False)) == ["bundled", "path", "upload"]
    assert list(offered_sources(SOURCES, hosted=True)) == ["bundled", "upload"]
    assert choose_source("path", hosted=False) == SourceChoice("path", "")
    fallback = choose_source("path", hosted=True)
    assert fallback.source == "bundled" and fallback.note == PATH_NOTE and "Upload" in fallback.note
    assert choose_source("upload", hosted=True).source == "upload" and choose_source("upload", True).note == ""


def test_timing_lock_tells_the_second_caller_it_waits():
    lock = TimingLock()
    first_holds, release_first = threading.Event(), threading.Event()
    told, order = [], []

    def first():
        with lock.hold(lambda: told.append("first")) as waited:
            order.append(("first in", waited))
            first_holds.set()
            release_first.wait(10)
            order.append(("first out", None))  # still holding the lock

    def second():
        first_holds.wait(10)
        with lock.hold(lambda: told.append("second")) as waited:
            order.append(("second in", waited))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_holds.wait(10)
    for _ in range(200):  # until the second caller has been told and blocks
        if told:
            break
        threading.Event().wait(0.01)
    assert told == ["second"] and lock.busy
    assert ("second in", True) not in order  # it waits while the first holds the lock
    release_first.set()
    for t in threads:
        t.join(10)
    assert order == [("first in", False), ("first out", None), ("second in", True)]
    assert told == ["second"] and not lock.busy


def test_timing_lock_free_means_no_callback_and_released_on_error():
    lock = TimingLock()
    told = []
    with pytest.raises(ValueError), lock.hold(lambda: told.append(1)):
        raise ValueError("measurement failed")
    assert not lock.busy and told == []
    with lock.hold(lambda: told.append(1)) as waited:
        assert waited is False and lock.busy
    assert told == []


def test_one_server_lock_per_process():
    from wlm.hosting import SERVER_LOCK

    assert isinstance(SERVER_LOCK, TimingLock) and not SERVER_LOCK.busy
