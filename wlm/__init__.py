"""wlm: dynamic quantization of the PyTorch tutorial's LSTM word language model."""
import warnings

# Notices from torch that say nothing to our users, filtered here and only here (the test suite
# registers this same table with pytest, which otherwise re-enables them in every test):
# - torch.ao.quantization announces its move to torchao on every call, and quantized tensor
#   creation warns likewise; we use the API pinned in requirements.txt on purpose.
# - ONNX export of nn.LSTM warns about batch sizes for every LSTM and about its legacy exporter,
#   which we choose on purpose (it handles explicit (h0, c0) inputs well).
# - torch.load warns of an unusual pickle protocol in a file that is no checkpoint at all, before our
#   own error says what the file is.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel"),
    (UserWarning, r"Exporting a model to ONNX with a batch_size other than 1"),
    (DeprecationWarning, r"You are using the legacy TorchScript-based ONNX export"),
    (UserWarning, r"Detected pickle protocol \d+ in the checkpoint"),
)
for _category, _message in KNOWN_WARNINGS:
    warnings.filterwarnings("ignore", message=_message, category=_category)

from .errors import WlmError

__all__ = ["KNOWN_WARNINGS", "WlmError"]
