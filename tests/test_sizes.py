import io

import pytest
import torch

from wlm.quantize import PRESETS, QuantSpec, quantize
from wlm.sizes import module_sizes, part_table, size_by_part, state_dict_bytes, weights_per_part

from conftest import tiny_model


def test_size_by_part_matches_module_sizes_and_shows_what_quantizing_shrinks():
    model = tiny_model(200)
    quant = quantize(model, PRESETS["tutorial"])
    table = size_by_part({"float": model, "quantized": quant})
    sizes = table.pivot(index="part", columns="model", values="bytes")
    assert sizes["float"].to_dict() == module_sizes(model)
    assert sizes.loc["embedding", "quantized"] == sizes.loc["embedding", "float"]  # tutorial leaves it in float
    assert sizes.loc["decoder", "quantized"] < sizes.loc["decoder", "float"] / 2
    assert table.groupby("model")["share"].sum().round(9).eq(1).all()
    with_emb = size_by_part({"q": quantize(model, PRESETS["int8+emb8"])}).set_index("part")
    assert with_emb.loc["embedding", "bytes"] < sizes.loc["embedding", "float"] / 2


def test_part_table_lists_weights_sizes_and_storage_with_a_total():
    model = tiny_model(200)
    spec = PRESETS["int8+emb4"]
    quant = quantize(model, spec)
    table = part_table(size_by_part({"float": model, "quantized": quant}), weights_per_part(model), spec)
    assert list(table.index) == ["embedding", "lstm", "decoder", "total"]
    assert table.loc["total", "weights"] == sum(p.numel() for p in model.parameters())
    assert table.loc["total", "float_mb"] == pytest.approx(table["float_mb"].iloc[:3].sum())
    assert table.loc["embedding", "quantized_mb"] < table.loc["embedding", "float_mb"] / 3  # 4 bits of 32, plus scales
    assert table.loc["embedding", "quantized_storage"].startswith("4-bit")


@pytest.mark.parametrize("value, text", [(0.5, "500 kB"), (12.34, "12.3 MB"), (1.0, "1.0 MB")])
def test_sizes_print_in_readable_units(value, text):
    from wlm.sizes import format_mb

    assert format_mb(value) == text


def _file_bytes(module: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return len(buffer.getvalue())


@pytest.mark.parametrize("spec", [*PRESETS.values(), QuantSpec(embedding=True, embedding_bits=4),
                                  QuantSpec(linear=True, per_channel=True, dtype="qint8", embedding=True)],
                         ids=[*PRESETS, "emb4 only", "per-channel + emb8"])
def test_each_size_is_the_size_of_the_file_torch_save_writes(spec):
    # Float parts are counted without their bytes being written (skip_data); the count must still be the file's.
    model = tiny_model(300)
    quantized = quantize(model, spec)
    for module in (quantized, quantized.encoder, quantized.rnn, quantized.decoder):
        assert state_dict_bytes(module) == _file_bytes(module)
