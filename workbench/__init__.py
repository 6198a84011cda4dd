"""Experiment workbench for audio-driven facial animation (speech -> 52 ARKit blendshapes)."""

__version__ = "0.1.0"
