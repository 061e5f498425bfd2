"""`python -m tunesuite ...`: the `tunesuite` command without needing it on PATH."""

from .cli import main

main()
