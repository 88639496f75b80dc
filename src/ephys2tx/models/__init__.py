"""Models: the forest baseline, the family BiLSTM and mouse-to-human transfer.

The transfer method names live here, free of torch, so the CLI can list them cheaply.
"""

TRANSFER_METHODS = ("finetune", "joint", "align", "adversarial")
