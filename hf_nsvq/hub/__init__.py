"""Model cards and Hub publishing for training output folders (the schema is in `hf_nsvq.hub.folder`)."""

from .card import render_model_card, write_model_card
from .folder import TrainingOutput, read_training_output
from .push import push_to_hub

__all__ = ["TrainingOutput", "push_to_hub", "read_training_output", "render_model_card", "write_model_card"]
