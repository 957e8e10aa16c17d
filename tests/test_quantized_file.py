import io

import pytest
import torch

from wlm.errors import WlmError
from wlm.quantize import PRESETS, QuantSpec, quantize
from wlm.quantized_file import load_note, load_quantized, quantized_bytes

from conftest import tiny_model


@pytest.mark.parametrize("name", list(PRESETS))
def test_quantized_model_file_reloads_with_identical_outputs(name):
    model = tiny_model(60, nlayers=2)
    quant = quantize(model, PRESETS[name])
    data = quantized_bytes(quant)
    # The file is plain tensors: the safe loader accepts it.
    torch.load(io.BytesIO(data), weights_only=True)
    torch.manual_seed(123)  # the rebuilt model starts from other random weights
    again = load_quantized(data, model.config, PRESETS[name])
    x = torch.randint(60, (30, 1), generator=torch.Generator().manual_seed(0))
    a, _ = quant(x, quant.init_hidden(1))
    b, _ = again(x, again.init_hidden(1))
    assert torch.equal(a, b)


def test_load_note_code_runs_and_loads_the_file(tmp_path):
    model = tiny_model(40)
    spec = PRESETS["int8+emb4"]
    quant = quantize(model, spec)
    path = tmp_path / "q.pt"
    path.write_bytes(quantized_bytes(quant))
    scope: dict = {}
    exec(load_note(model.config, spec, str(path)), scope)
    x = torch.tensor([[1], [2], [3]])
    assert torch.equal(scope["model"](x, quant.init_hidden(1))[0], quant(x, quant.init_hidden(1))[0])


def test_load_quantized_rejects_a_wrong_spec_and_junk():
    model = tiny_model(40)
    data = quantized_bytes(quantize(model, PRESETS["tutorial"]))
    with pytest.raises(WlmError, match="does not fit"):
        load_quantized(data, model.config, PRESETS["fp32"])
    with pytest.raises(WlmError, match="does not fit"):
        load_quantized(data, model.config, QuantSpec(lstm=True, linear=True, embedding=True))
    with pytest.raises(WlmError, match="cannot be read"):
        load_quantized(b"not a torch file", model.config, PRESETS["tutorial"])
