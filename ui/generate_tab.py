"""The Generate tab: float and quantized models write from the same seed side by side, where they part, and how
likely a shared pick was at each step until then."""
from __future__ import annotations

import contextlib
import threading
import time
import weakref

import streamlit as st

try:  # the exception Streamlit raises inside a script its page reruns or stops (RerunException, StopException)
    from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException
except ImportError:  # Streamlit before 1.38
    from streamlit.runtime.scriptrunner.exceptions import ScriptControlException

from wlm import hosting
from wlm.corpus import EOS
from wlm.errors import WlmError
from wlm.generate import MAX_WORDS, first_difference

from . import glossary
from .backend import shared_picks, writing
from .charts import generate as charts
from .charts import word_html
from .requests import Setup, Vocabulary
from .setup import DEFAULTS
from .widgets import SessionPage, bounded_text, error, shared_caption, yield_to_streamlit

MAX_APP_WORDS = min(1000, MAX_WORDS)
LOOK_EVERY = 0.25  # seconds between two looks of a page at the writing it follows
REDRAWS_PER_SECOND = 16  # texts redrawn each second by all the pages of a server that follow writings


class _Followers:
    """The pages of this server following a writing now. Each redraw of a growing text is a message from the
    server and a new layout in the browser: twenty pages of one class redrawing both texts four times a second
    sent 160 of them a second, on a shared machine from the cores that write them. So the more pages follow, the
    less often each redraws."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def following(self):
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1

    def redraw_every(self) -> float:
        return max(LOOK_EVERY, self._count / REDRAWS_PER_SECOND)


FOLLOWERS = _Followers()


def _markdown_word(word: str) -> str:
    if word == EOS:
        return "  \n"
    escaped = "".join("\\" + c if c in "\\`*_[]<>#|~$" else c for c in word)
    return escaped + " "


RESULT = "gen_result"  # session state: the last texts written, finished or cut short by a rerun
PRESSED = "gen_pressed"  # session state: a press of Generate that no run of this tab has taken up yet
AGAIN = "gen_again"  # session state: this session's "write again" presses under another visitor's texts
WIDGETS = ("gen_temperature", "gen_words", "gen_prompt")  # this tab's settings of a writing, by their keys
RESUMED = ("The writing went on while the page reran (a tab switch or a change in the sidebar), and here it is, "
           "finished.")


def _changes(earlier: dict, request: tuple, label: str) -> list[str]:
    """What of the setup differs from the one ``earlier``'s texts were written with, in words."""
    (source, spec), words, temperature, seed, prompt = earlier["request"]
    (source_now, spec_now), words_now, temperature_now, seed_now, prompt_now = request
    changed = [("the model", source != source_now),
               (f"the quantization ({earlier['label']} → {label})", spec != spec_now),
               (f"the seed ({seed} → {seed_now})", seed != seed_now),
               (f"the temperature ({temperature:g} → {temperature_now:g})", temperature != temperature_now),
               (f"the number of words ({words:,} → {words_now:,})", words != words_now),
               ("the prompt", prompt != prompt_now)]
    return [what for what, differs in changed if differs]


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _note(result: dict, changes: list[str]) -> str | None:
    """Why the texts shown are not this setup's finished pair: the writing was cut short, or the setup changed."""
    earlier = f" They are from the earlier setup: since then {_listed(changes)} changed." if changes else ""
    if not result["finished"]:
        counts = {name: len(result[name]) for name in ("float", "quantized")}
        asked = result["request"][1]
        if counts["float"] == counts["quantized"]:
            written = (f"after {counts['float']:,} of {asked:,} words" if counts["float"]
                       else "before either model wrote a word")
        else:
            written = (f"when float had written {counts['float']:,} of {asked:,} words and quantized "
                       f"{counts['quantized']:,}")
        return (f"The writing stopped {written}, because the page reran (a tab switch or a change in the sidebar) "
                f"before it finished; what was written until then is kept below.{earlier} Press Generate to "
                "write it again.")
    if changes:
        return (f"These texts were written with an earlier setup: since then {_listed(changes)} changed. Press "
                "Generate to write them with this one.")
    return None


def _write(setup: Setup, request: tuple, boxes: dict, again: int, kwargs: dict) -> dict:
    """Both models write at once (``backend.writing``: once per server for the same texts, in the background) and
    the page shows their words as they come.

    The words shown are kept in a record in the session, put there before the first word and changed in place,
    never stored again: a rerun of the page (a tab switch, a change in the sidebar) stops the script at its next box
    update, and once the stop is requested Streamlit raises at every access to the session state from this run.
    The writing itself goes on, and the page's next run takes it up (``_follow``)."""
    earlier = st.session_state.get(RESULT)
    record = _start(setup.variant, setup.vocabulary, request, again, kwargs)
    try:
        _follow(record, boxes)
    except ScriptControlException:
        raise  # a rerun or a stop: the record keeps what was shown, and the writing goes on
    except Exception:
        st.session_state[RESULT] = earlier  # an error, not a rerun: nothing is kept as if merely cut short
        raise
    return record


def _start(variant, vocabulary: Vocabulary, request: tuple, again: int, kwargs: dict) -> dict:
    """The session's record of a writing asked for now (begun once per server for the same texts), kept in the
    session before its first word."""
    job = writing(variant, vocabulary, again=again, _page=SessionPage(), **kwargs)
    record = {"float": [], "quantized": [], "seconds": {}, "request": request, "label": variant.spec.label,
              "finished": False, "first_difference": None, "writing": job, "resumed": False}
    st.session_state[RESULT] = record
    return record


def _settings() -> tuple:
    """What a writing is asked with, as the session holds it: the sidebar's setup and this tab's widgets."""
    return tuple(st.session_state.get(key) for key in (*DEFAULTS, *WIDGETS))


def _begin(models: tuple, request: tuple, again: int, kwargs: dict, drawn: tuple) -> None:
    """Generate's callback. A press is taken up by the run it starts, if that run reaches the button; a visitor who
    opens another tab at once starts a run of that tab instead, and only the callback runs before it. So the
    writing begins here, goes on in the background, and this tab takes it up when it is next open. A press that
    came with a change of a setting (``drawn``: the settings the button was drawn with) is the run's to write,
    with the setting as changed; and what cannot begin here is left for the tab's next run to try and report.

    Streamlit keeps a button's callback arguments as long as the session shows it, so ``models`` holds the
    variant and the vocabulary's words only weakly (``_models_of``): an upload's model is the server's caches' to
    let go. Once let go, the press is the tab's next run to write, as when a setting changed."""
    st.session_state[PRESSED] = True
    variant_ref, key, dictionary_ref = models
    variant, dictionary = variant_ref(), dictionary_ref()
    if _settings() != drawn or variant is None or dictionary is None:
        return
    with contextlib.suppress(WlmError):
        _start(variant, Vocabulary(key, dictionary), request, again, kwargs)


def _models_of(setup: Setup) -> tuple:
    return weakref.ref(setup.variant), setup.vocabulary.key, weakref.ref(setup.vocabulary.dictionary)


def _follow(record: dict, boxes: dict) -> None:
    """Show the record's writing as it goes until it ends, copying its words into the record (in place)."""
    job = record["writing"]
    drawn, drawn_at = None, 0.0  # what the boxes show (begun, and each text's length), and when it was drawn
    with FOLLOWERS.following():
        while True:
            ended = job.wait(LOOK_EVERY)
            words = job.snapshot()
            for name in boxes:
                record[name][:] = words[name]
            shown = (job.started, tuple(len(words[name]) for name in boxes))
            if shown == drawn or (not ended and time.monotonic() - drawn_at < FOLLOWERS.redraw_every()):
                yield_to_streamlit()  # a rerun or a closed page still ends the wait within LOOK_EVERY
            else:
                for name, box in boxes.items():
                    if job.started or ended:
                        box.markdown("".join(_markdown_word(w) for w in words[name]))
                    else:
                        box.caption(":material/hourglass_bottom: Waiting for another visitor's text to be written "
                                    "first, so that the two do not share the cores.")
                drawn, drawn_at = shown, time.monotonic()
            if ended:
                break
    if job.error is not None:
        raise job.error
    record["seconds"].update(job.seconds)
    record["first_difference"] = first_difference(record["float"], record["quantized"])
    record["finished"] = True


def _resumable(result: dict) -> bool:
    """Whether an unfinished result's writing can still be taken up: it went on without the page, unless it lost
    its place in line to this session's next request (an error of its own is raised when taken up)."""
    job = result.get("writing")
    return not result["finished"] and job is not None and not isinstance(job.error, hosting.Superseded)


def render(setup: Setup) -> None:
    if setup.dictionary is None:
        st.info(setup.missing)
        return
    c1, c2, c3 = st.columns([2, 1, 3])
    temperature = c1.slider("Temperature (0 = greedy)", 0.0, 2.0, 1.0, 0.05, key="gen_temperature",
                            persist_state="page")
    words = c2.number_input("Words", 1, MAX_APP_WORDS, 100, key="gen_words", persist_state="page")
    words = min(max(int(words), 1), MAX_APP_WORDS)  # the range bounds the box, not what a script may send
    prompt = c3.text_input("Prompt (optional)", key="gen_prompt", persist_state="page")
    prompt = bounded_text(setup, prompt, hosting.MAX_PROMPT_WORDS, hosting.MAX_PROMPT_CHARS, c3)
    st.caption(f"Seed {setup.seed} (sidebar). {charts.TICKETS_EXPLAINED}")
    glossary.expander(["<unk>", "<eos>", "@-@"], title="The corpus's own words in the texts")
    _, unknown = setup.dictionary.encode_prompt(prompt, strict=False)  # only named here, never refused
    if unknown:
        st.warning(f"Not in the vocabulary (read as <unk>): {', '.join(unknown[:10])}")
    request = (setup.variant.key, int(words), float(temperature), setup.seed, prompt)
    kwargs = {"words": int(words), "temperature": float(temperature), "seed": setup.seed, "prompt": prompt}
    again = st.session_state.get(AGAIN, 0)
    clicked = st.button("Generate", key="gen_go", type="primary", on_click=_begin,
                        args=(_models_of(setup), request, again, kwargs, _settings()))
    # Pressed in a run that never got here (another tab opened at once): the writing _begin began is followed
    # below, as one the page reran over; one it could not begin is written now, and says why it cannot be.
    marked, begun = st.session_state.pop(PRESSED, False), st.session_state.get(RESULT)
    pressed = clicked or (marked and not (begun and _resumable(begun)))
    if not pressed and st.session_state.pop(f"{AGAIN}_pressed", False):
        pressed = True  # "Write again" under another visitor's texts: this session's own writing
    result = None if pressed else st.session_state.get(RESULT)
    changes = _changes(result, request, setup.spec.label) if result else []
    note = st.empty()  # above the texts: why they are not this setup's finished pair, when they are not
    left, right = st.columns(2)
    left.markdown("**float**")
    right.markdown(f"**quantized ({result['label'] if result and changes else setup.spec.label})**")
    float_box, quant_box = left.empty(), right.empty()
    boxes = {"float": float_box, "quantized": quant_box}
    try:
        if pressed:
            result = _write(setup, request, boxes, again, kwargs)
        elif result and _resumable(result):
            result["resumed"] = True  # it went on while the page reran: follow it to its end
            _follow(result, boxes)
    except WlmError as exc:
        error(exc, setup)
        return
    if not result:
        return
    if not result["finished"]:  # its writing may still be stopping in the run it began in: take what is there
        result = {**result, "float": list(result["float"]), "quantized": list(result["quantized"])}
        result["first_difference"] = first_difference(result["float"], result["quantized"])
    said = _note(result, changes)
    if said:
        note.info(said)
    elif result.get("resumed"):
        note.info(RESUMED)
    first = result["first_difference"]
    float_box.markdown(word_html.paired_html(result["float"], first, result["quantized"]), unsafe_allow_html=True)
    quant_box.markdown(word_html.paired_html(result["quantized"], first, result["float"]), unsafe_allow_html=True)
    if result["float"] or result["quantized"]:
        # Markdown, not a caption, whose faded text would draw the marks paler than the texts' own.
        st.markdown(f"<div style='font-size:0.875rem'>{word_html.paired_legend(first)}</div>", unsafe_allow_html=True)
    if said:  # the chart replays this setup's models along the texts: only for its own finished pair
        return
    if result.get("writing") is not None:
        shared_caption(result["writing"], "texts", AGAIN, done="Written", redo="Write again",
                       saved="so they were not written twice; the speed below is that writing's")
    # Replaying both models along the shared text takes seconds for a long one that never parts (float16).
    with st.spinner("Replaying both models to measure how likely a shared pick was at each step…"):
        agreed = shared_picks(setup.variant, setup.vocabulary, setup.seed, float(temperature), prompt, int(words),
                              result["float"], result["quantized"])
    figure = charts.same_pick_chart(agreed, float(temperature))
    st.altair_chart(figure.chart, width="stretch")
    st.caption(f"**Takeaway:** {figure.takeaway} "
               f"{charts.generation_speed_note(len(result['float']), result['seconds'], setup.spec.label)}")
