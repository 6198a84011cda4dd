"""Synthetic training data made offline: eSpeak NG speech with procedural ARKit targets.

``generate_dataset`` (from ``workbench.synth.generate``) writes the embedded default dataset.
It is imported on first use, so importing ``workbench.synth.espeak`` alone stays light.
"""

__all__ = ["generate_dataset"]


def __getattr__(name: str):
    if name == "generate_dataset":
        from workbench.synth.generate import generate_dataset

        return generate_dataset
    raise AttributeError(f"module 'workbench.synth' has no attribute {name!r}")
