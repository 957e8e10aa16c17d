"""wlm: dynamic quantization of the PyTorch tutorial's LSTM word language model."""
import warnings

# torch.ao.quantization announces its move to torchao on every call, and quantized tensor
# creation warns likewise; we use the API pinned in requirements.txt, so both notices are
# noise for our users. This is the only place they are filtered.
warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel", category=UserWarning)
# ONNX export of nn.LSTM: torch warns about batch sizes for every LSTM and about its legacy exporter,
# which we choose on purpose (it handles explicit (h0, c0) inputs well).
warnings.filterwarnings("ignore", message=r"Exporting a model to ONNX with a batch_size other than 1", category=UserWarning)
warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export", category=DeprecationWarning)

from .errors import WlmError  # noqa: E402

__all__ = ["WlmError"]
