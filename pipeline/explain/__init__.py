"""Explanations: attribution methods (`methods/`, one module each) and inside-the-model
parts (`parts/`, one module each), all subclasses of the classes in `base`, found by
`registry`. This package imports nothing itself, so figure stages read stored arrays
without loading torch.
"""
