from .loading import load_pipeline
from .text_to_video import GenerationResult, WanPipeline

__all__ = ["GenerationResult", "WanPipeline", "load_pipeline"]
