"""Evaluation: the fold rule, cross-validation, metrics and the transfer study."""

# shares of each fold's training donors in a learning curve (test folds unchanged)
LEARNING_CURVE_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
