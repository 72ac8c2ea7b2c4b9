"""How far attributions can be trusted: faithfulness (deletion / insertion) and the
model-parameter randomization sanity check."""

RANDOM_BASELINE = "random"  # the name the random-attribution baseline is reported under
