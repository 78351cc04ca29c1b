"""Data: tokenizers, preference-file formats with validation, batching, TFDS builders.

Submodules are imported explicitly (alignax.data.tokenizer, .formats, .batching,
.tfds_builders, .describe); tfds_builders imports tensorflow_datasets, so it is not imported here.
"""

from alignax.data.tokenizer import DataError, TooLongError

__all__ = ["DataError", "TooLongError"]
