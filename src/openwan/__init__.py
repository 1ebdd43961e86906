"""openwan: an open implementation of the Wan 2.1 video generation system.

>>> import openwan
>>> pipe = openwan.load_pipeline("Wan2.1-T2V-1.3B")           # official or diffusers layout
>>> result = pipe.generate("a corgi surfing a wave", seed=42, output="corgi.mp4")
>>> result.frames.shape                                       # (81, 480, 832, 3) uint8
"""

__version__ = "0.1.0"

from .checkpoint.convert import convert_checkpoint  # noqa: E402
from .checkpoint.inspect import describe_checkpoint  # noqa: E402
from .errors import CheckpointError, InputError, NumericalError, OpenWanError  # noqa: E402
from .pipelines import GenerationResult, WanPipeline, load_pipeline  # noqa: E402

__all__ = [
    "CheckpointError", "GenerationResult", "InputError", "NumericalError", "OpenWanError", "WanPipeline",
    "__version__", "convert_checkpoint", "describe_checkpoint", "load_pipeline",
]
