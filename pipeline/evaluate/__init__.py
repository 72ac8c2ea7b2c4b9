"""How far attributions can be trusted: faithfulness (deletion / insertion) and the
model-parameter randomization sanity check. The scores that rank methods are defined
here, each with the direction in which it is better (read by the table and figures)."""

from pipeline.explain.base import Score

RANDOM_BASELINE = "random"  # the name the random-attribution baseline is reported under

DELETION = Score("deletion_auc", "deletion AUC", "lower")
INSERTION = Score("insertion_auc", "insertion AUC", "higher")
SANITY = Score("sanity_spearman_all", "sanity ρ (all layers random)", "lower")
SCORES = (DELETION, INSERTION, SANITY)
