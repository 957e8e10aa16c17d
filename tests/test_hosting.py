import threading

import pytest

from wlm.errors import WlmError
from wlm.hosting import (
    BUNDLED_PARAMS,
    DEFAULT_MAX_PARAMS,
    HEAVY_SLOTS,
    HEAVY_WORK,
    MAX_SWEEP_THREADS,
    MAX_SWEEP_TOKENS,
    MAX_TOKENS,
    PAGE_WORK,
    PATH_NOTE,
    SERVER_LOCK,
    BoundedText,
    FairQueue,
    ServingMode,
    SourceChoice,
    Superseded,
    TokenBudget,
    bound_text,
    choose_source,
    clamp_tokens,
    hosted_mode,
    is_loopback,
    max_params,
    max_upload_bytes,
    offered_sources,
    public_message,
    serving_mode,
    sweep_threads,
    usable_cpus,
    waiting_message,
)

from conftest import wait_until

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


def test_the_second_caller_is_told_it_waits_and_gets_in_after_the_first():
    queue = FairQueue(1, poll=0.01)
    first_holds, release_first = threading.Event(), threading.Event()
    told, order = [], []

    def first():
        with queue.hold("a", lambda place: told.append(("a", place))) as waited:
            order.append(("first in", waited))
            first_holds.set()
            release_first.wait(10)
            order.append(("first out", None))  # still holding the slot

    def second():
        first_holds.wait(10)
        with queue.hold("b", lambda place: told.append(("b", place))) as waited:
            order.append(("second in", waited))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    assert wait_until(lambda: told)  # the second caller has been told, and waits
    assert set(told) == {("b", 1)} and queue.busy and queue.waiting == 1  # told at every poll, always place 1
    assert order == [("first in", False)]  # told it waits, and not let in (in either way) while the first holds
    release_first.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert order == [("first in", False), ("first out", None), ("second in", True)]
    assert not queue.busy and queue.waiting == 0


def test_first_come_first_served_with_places_that_move_up():
    queue = FairQueue(1, poll=0.01)
    places: dict[str, list[int]] = {}
    entered: list[str] = []
    release = threading.Event()

    def visitor(name: str):
        with queue.hold(name, lambda place: places.setdefault(name, []).append(place)):
            entered.append(name)
            if name == "holder":
                release.wait(10)

    holder = threading.Thread(target=visitor, args=("holder",))
    holder.start()
    assert wait_until(lambda: entered == ["holder"])
    waiters = []
    for i, name in enumerate(["v1", "v2", "v3", "v4"]):  # arriving one after another
        waiters.append(threading.Thread(target=visitor, args=(name,)))
        waiters[-1].start()
        assert wait_until(lambda: queue.waiting == i + 1)
    assert wait_until(lambda: all(name in places for name in ["v1", "v2", "v3", "v4"]))
    assert [places[name][0] for name in ["v1", "v2", "v3", "v4"]] == [1, 2, 3, 4]
    release.set()
    for t in [holder, *waiters]:
        t.join(10)
    assert entered == ["holder", "v1", "v2", "v3", "v4"]  # in the order they came, whatever the threads did
    assert places["v4"] == sorted(places["v4"], reverse=True)  # a place only ever moves up


def test_a_session_holds_one_place_its_newer_request_replaces_the_older():
    queue = FairQueue(1, poll=0.01)
    release = threading.Event()
    outcome: dict[str, object] = {}

    def hold(name: str, owner: str):
        try:
            with queue.hold(owner):
                outcome[name] = "ran"
                if name == "other":
                    release.wait(10)
        except Superseded as exc:
            outcome[name] = exc

    other = threading.Thread(target=hold, args=("other", "visitor-1"))
    other.start()
    assert wait_until(lambda: queue.busy)
    older = threading.Thread(target=hold, args=("older", "visitor-2"))
    older.start()
    assert wait_until(lambda: queue.waiting == 1)
    newer = threading.Thread(target=hold, args=("newer", "visitor-2"))  # the same session asks again
    newer.start()
    older.join(10)
    assert isinstance(outcome["older"], Superseded) and isinstance(outcome["older"], WlmError)
    assert queue.waiting == 1  # one place for visitor-2, not two
    release.set()
    for t in (other, newer):
        t.join(10)
    assert outcome["newer"] == "ran" and not queue.busy


def test_a_holder_may_nest_and_an_error_gives_the_slot_back():
    queue = FairQueue(1, poll=0.01)
    told = []
    with queue.hold("a", told.append) as waited:
        assert waited is False and queue.busy
        with queue.hold("a", told.append) as again:  # one cached function calling another
            assert again is False
        assert queue.busy  # the outer hold still has it
    assert not queue.busy and told == []
    with pytest.raises(ValueError), queue.hold("a"):
        raise ValueError("measurement failed")
    assert not queue.busy


def test_a_wait_that_is_interrupted_leaves_the_queue():
    # A page that reruns or closes: Streamlit raises from the next call the page makes, here on_wait.
    queue = FairQueue(1, poll=0.01)

    class Rerun(BaseException):
        pass

    def rerun(place):
        raise Rerun()

    outcome = []

    def leave():
        try:
            with queue.hold("b", rerun):
                outcome.append("ran")
        except Rerun:
            outcome.append("left")

    with queue.hold("a"):
        leaving = threading.Thread(target=leave)
        leaving.start()
        leaving.join(10)
        assert outcome == ["left"] and queue.waiting == 0
    assert not queue.busy
    with queue.hold("c") as waited:  # nobody is left in front
        assert waited is False


def test_heavy_work_runs_a_few_at_once():
    queue = FairQueue(2, poll=0.01)
    inside, peak, lock, release = [0], [0], threading.Lock(), threading.Event()

    def work(name):
        with queue.hold(name):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            release.wait(10)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    assert wait_until(lambda: queue.waiting == 4)
    assert inside[0] == 2
    release.set()
    for t in threads:
        t.join(10)
    assert peak[0] == 2 and inside[0] == 0


def test_one_of_each_queue_per_process():
    assert isinstance(SERVER_LOCK, FairQueue) and SERVER_LOCK.slots == 1 and not SERVER_LOCK.busy
    assert isinstance(HEAVY_WORK, FairQueue) and HEAVY_WORK.slots == HEAVY_SLOTS > 1
    assert isinstance(PAGE_WORK, FairQueue) and PAGE_WORK is not HEAVY_WORK and PAGE_WORK.slots == HEAVY_SLOTS


def test_waiting_message_names_the_place():
    assert "yours is next" in waiting_message(1)
    assert "number 3 in the queue" in waiting_message(3)


def test_bound_text_cuts_words_and_characters_and_says_so():
    kept = bound_text("one two\nthree four five", max_words=3, max_chars=100)
    assert kept.text == "one two\nthree"  # line breaks inside the kept part stay
    assert "at most 3 words" in kept.note and "first 3 words of yours (5 words)" in kept.note
    long = bound_text("abcdef " * 10, max_words=100, max_chars=17)
    assert long.text == "abcdef abcdef" and "(70 characters)" in long.note
    assert bound_text("abcdefghij", max_words=5, max_chars=4).text == ""  # one word longer than the bound
    short = bound_text("a few words", max_words=3, max_chars=11)
    assert short == BoundedText("a few words", "")


def test_max_params_default_and_setting():
    assert max_params({}) == DEFAULT_MAX_PARAMS == 2 * BUNDLED_PARAMS
    assert max_params({"WLM_MAX_PARAMS": "1_000_000"}) == 1_000_000
    for bad in ("lots", "0", "-5"):
        with pytest.raises(WlmError, match="WLM_MAX_PARAMS"):
            max_params({"WLM_MAX_PARAMS": bad})
    assert max_upload_bytes(1_000) == 4_000 + 2**20


def test_bundled_params_is_the_bundled_models_count():
    from wlm.checkpoint import load_model

    model = load_model().model
    assert sum(t.numel() for t in model.state_dict().values()) == BUNDLED_PARAMS


@pytest.mark.parametrize("address, loopback", [("localhost", True), ("127.0.0.1", True), ("127.8.0.1", True),
                                               ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                               ("", False), (None, False), ("192.168.1.20", False),
                                               ("demo.example.org", False)])
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


def test_a_reachable_laptop_server_runs_hosted_with_a_note():
    assert serving_mode("localhost", {}) == ServingMode(False, "")
    assert serving_mode("localhost", {"WLM_HOSTED": "1"}) == ServingMode(True, "")
    reachable = serving_mode("0.0.0.0", {})
    assert reachable.hosted and "0.0.0.0" in reachable.note and "localhost" in reachable.note
    assert serving_mode("0.0.0.0", {"WLM_HOSTED": "0"}).hosted  # off-loopback is never a laptop
    assert "every network interface" in serving_mode(None, {}).note
    with pytest.raises(WlmError, match="maybe"):
        serving_mode("localhost", {"WLM_HOSTED": "maybe"})


def test_the_apps_config_listens_on_loopback():
    import tomllib

    from conftest import REPO

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert is_loopback(config["server"]["address"])


def test_public_messages_name_no_server_path():
    text = ("The corpus in /srv/wlm/data/wikitext-2 cannot be read; cache at ~/.cache/wlm/onnx "
            "(see /tmp/x1/upload.pth). 2,000 tokens/s, 1/2 of them, 'model.pth' kept")
    public = public_message(text, hosted=True)
    assert "/srv" not in public and "~/" not in public and "/tmp" not in public
    assert public.count("(a folder on the server)") == 3
    assert "tokens/s, 1/2 of them, 'model.pth' kept" in public  # ratios and file names are not paths
    assert public_message(text, hosted=False) == text


def test_sweep_threads_follow_the_cores_this_process_may_use(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert usable_cpus() == 6
    assert sweep_threads(hosted=False) == [1, 2, 3, 4, 5, 6]
    assert sweep_threads(hosted=True) == list(range(1, MAX_SWEEP_THREADS + 1))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert sweep_threads(hosted=False) == [1] and sweep_threads(hosted=True) == [1]
