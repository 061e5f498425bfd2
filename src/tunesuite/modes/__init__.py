"""The built-in fine-tuning modes; importing the package registers them (registry.MODES).

A mode turns a freshly loaded model into the model to train. Every mode keeps the head trainable: the task's
head modules plus any module the checkpoint had no weights for (newly initialised modules must learn).
Adding a mode is one function under `@register_mode(...)`, plus a dataclass if it has flags.
"""

from tunesuite.models.families import layer_stack
from tunesuite.modes import (
    freeze,  # noqa: F401 (each registers its modes)
    lora,  # noqa: F401 (each registers its modes)
    no_training,  # noqa: F401 (each registers its modes)
    peft_methods,  # noqa: F401 (each registers its modes)
    peft_methods_more,  # noqa: F401 (each registers its modes)
    prompt,  # noqa: F401 (each registers its modes)
    setfit_mode,  # noqa: F401 (each registers its modes)
)
from tunesuite.modes.freezing import trainable_names, trainable_summary

__all__ = ["layer_stack", "trainable_names", "trainable_summary"]
