"""`python -m alignax.losses`: prints the loss registry (name | kind | paper | needs reference |
needs lengths | other inputs)."""

from alignax.losses.registry import table

print(table())
