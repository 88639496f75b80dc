"""The trust layer: how far to believe each call.

Conformal sets (`conformal`), temperature scaling (`temperature`), the training-cell summary
and per-cell flags (`assess`), novelty (`novelty`), the species fingerprint (`species`), the
not-an-interneuron detector and batch shift (`interneuron`), and the rule that ties the trust
columns together (`agreement`). Pure computation: saving and loading live in `models.trusted`.
"""
