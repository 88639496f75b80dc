"""ephys2tx: electrophysiology to transcriptomic subclass and t-type, mouse to human.

```python
import ephys2tx as ex
model = ex.load_model("human")            # a species: the cached default model; a path: a saved model
table = model.predict(ex.read_cells("cells.csv"), alpha=0.1)   # what `ephys2tx predict` writes
```

The names below are imported on first use, so `import ephys2tx` stays light (no torch).
"""

from .version import __version__

__all__ = ["Predictor", "PredictionRun", "load_model", "read_cells", "__version__"]


def __getattr__(name: str):
    if name in {"Predictor", "PredictionRun", "load_model", "read_cells"}:
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'ephys2tx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
