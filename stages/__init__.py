"""One thin script per DVC stage: read params and inputs, call `pipeline`, write outputs.

Importing the package pins the CPU numerics (threads, kernels) before any stage imports
torch, so every stage computes the same bits on every machine of this kind
(`pipeline/numerics.py`)."""

from pipeline.numerics import pin_numerics

pin_numerics()
