"""Image-to-LaTeX networks built from config: `build_model(config, vocab_size)`.

Importing the package registers the families (`list_models()` -> ["rnn", "transformer"]).
"""

from models.base import (
    DecodeState,
    ImageToLatexModel,
    InvalidModelConfig,
    ModelConfig,
    build_model,
    list_models,
    register_model,
    validate,
)
from models.cnn_rnn import CNNRNNConfig
from models.resnet_transformer import ResNetTransformerConfig

__all__ = [
    "CNNRNNConfig",
    "DecodeState",
    "ImageToLatexModel",
    "InvalidModelConfig",
    "ModelConfig",
    "ResNetTransformerConfig",
    "build_model",
    "list_models",
    "register_model",
    "validate",
]
