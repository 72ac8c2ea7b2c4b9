"""How far attributions can be trusted: faithfulness (deletion / insertion, ROAD) and the
model-parameter randomization sanity check. The scores that rank methods are defined
here, each with the direction in which it is better (read by the table and figures)."""

from pipeline.explain.base import Score

RANDOM_BASELINE = "random"  # the name the random-attribution baseline is reported under

DELETION = Score("deletion_auc", "deletion AUC", "lower")
INSERTION = Score("insertion_auc", "insertion AUC", "higher")
# ROAD (Rong et al. 2022): pixels removed and imputed, most / least relevant first
ROAD_MORF = Score("road_morf_auc", "ROAD MoRF AUC", "lower")
ROAD_LERF = Score("road_lerf_auc", "ROAD LeRF AUC", "higher")
SANITY = Score("sanity_spearman_all", "sanity ρ (all layers random)", "lower")
SCORES = (DELETION, INSERTION, ROAD_MORF, ROAD_LERF, SANITY)
