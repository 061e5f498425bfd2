"""Offline demos and the corpora they build (Debian fortunes, scikit-learn digits, espeak-ng speech).

Importing the package registers each task's demo (registry.DEMOS): what a task script runs with no arguments.
"""

from tunesuite.demos import (
    asr,  # noqa: F401 (each registers its demo)
    audio,  # noqa: F401 (each registers its demo)
    image,  # noqa: F401 (each registers its demo)
    text,  # noqa: F401 (each registers its demo)
)
