"""Local tiny-model factory and model/processor loading.

Importing this package stays light (no torch / transformers / ms-swift): the submodules import
those inside the functions that need them.
"""
from bbuqc.models.loading import load_model_and_processor, num_llm_layers_from_config, read_num_llm_layers
from bbuqc.models.tiny import ensure_tiny_model, tiny_env, tiny_model_dir

__all__ = [
    "ensure_tiny_model",
    "load_model_and_processor",
    "num_llm_layers_from_config",
    "read_num_llm_layers",
    "tiny_env",
    "tiny_model_dir",
]
