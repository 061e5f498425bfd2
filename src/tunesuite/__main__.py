"""`python -m tunesuite ...`: the `tunesuite` command without needing it on PATH."""

from tunesuite.cli import main

main()
