"""The Walkthrough tab: the steps of PyTorch's dynamic quantization tutorial, one button each, on the loaded model."""
from __future__ import annotations

from typing import Callable, NamedTuple

import streamlit as st

from wlm import charts
from wlm.generate import generate

from .cached import part_sizes, variant_table, weights_of
from .setup import Setup
from .speed_tab import selected_specs
from .widgets import need_corpus, show


class Step(NamedTuple):
    title: str
    text: Callable[[Setup], str]
    run: Callable[[Setup], None]


def _define(setup: Setup) -> None:
    st.write(f"{sum(weights_of(setup.source_key, setup.model).values()):,} parameters.")
    st.text(str(setup.model))


def _data(setup: Setup) -> None:
    if setup.corpus is None:
        st.info(setup.missing)
        return
    c = setup.corpus
    st.write(f"{len(c.dictionary):,} distinct words; {len(c.train):,} training, {len(c.valid):,} "
             f"validation and {len(c.test):,} test tokens.")


def _weights(setup: Setup) -> None:
    card = setup.loaded.card or {}
    st.write({k: v for k, v in card.items() if k not in ("weights_sha256",)} or "No model card.")


def _generate(setup: Setup) -> None:
    if setup.dictionary is None:
        st.info(setup.missing)
        return
    words = list(generate(setup.model, setup.dictionary, words=40, temperature=1.0, seed=setup.seed))
    st.markdown(charts.paired_html(words, None), unsafe_allow_html=True)


def _quantize(setup: Setup) -> None:
    st.text(str(setup.quant))


def _size(setup: Setup) -> None:
    show(charts.size_chart(part_sizes(setup.source_key, setup.spec, setup.model, setup.quant)))


def _speed_and_loss(setup: Setup) -> None:
    if not need_corpus(setup):
        return
    tokens = min(500, len(setup.test_ids))
    request = (setup.source_key, setup.corpus_key, selected_specs(setup, []), tokens, 1)
    table = variant_table(*request, setup.model, setup.test_ids)
    st.dataframe(table, hide_index=True)
    show(charts.throughput_chart(table))


def _architecture(setup: Setup) -> str:
    config = setup.model.config
    return ("An embedding turns each word id into a vector, a stack of LSTM layers reads the "
            f"words in order, and a linear layer scores every word of the vocabulary as the next one. Here: "
            f"{config.ntoken:,} words, {config.ninp}-wide embedding, {config.nlayers} LSTM layers of {config.nhid}.")


STEPS = [
    Step("1. Define the model", _architecture, _define),
    Step("2. Load the data", lambda setup: "Wikitext-2, split into words; each line ends with an end-of-line token.",
         _data),
    Step("3. Load the pretrained weights", lambda setup: f"Weights come from {setup.loaded.source}.", _weights),
    Step("4. Generate text", lambda setup: "Feed a word, sample the next from the predicted distribution, repeat.",
         _generate),
    Step("5. Quantize", lambda setup: "Dynamic quantization stores weights as 8-bit integers and quantizes "
         "activations on the fly; only the layers chosen in the sidebar change.", _quantize),
    Step("6. Compare size", lambda setup: "The saved state_dict before and after.", _size),
    Step("7. Compare speed and loss", lambda setup: "Both models score the same test tokens; the tutorial uses one "
         "thread.", _speed_and_loss),
]


def render(setup: Setup) -> None:
    st.markdown("The steps of PyTorch's dynamic quantization tutorial, one at a time, on the model loaded now.")
    for index, step in enumerate(STEPS):
        with st.container(border=True):
            st.markdown(f"**{step.title}**  \n{step.text(setup)}")
            if not st.button("Run this step", key=f"walk_{index}") and not st.session_state.get(f"walk_done_{index}"):
                continue
            st.session_state[f"walk_done_{index}"] = True
            step.run(setup)
