"""How far attributions can be trusted: faithfulness (deletion / insertion) and the
model-parameter randomization sanity check."""
