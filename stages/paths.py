"""Where every stage reads and writes, relative to the repository root (see dvc.yaml)."""

from pathlib import Path

# written by the `params` stage once params.yaml validates; its bytes never change
PARAMS_VALID = Path("data/params_valid.txt")
DATASET = Path("data/dataset.npz")
DATA_METRICS = Path("metrics/data.json")
DATA_SAMPLES_FIG = Path("reports/figures/data_samples.png")

CLASSIFIER_DIR = Path("models/classifier")
CLASSIFIER_CKPTS = CLASSIFIER_DIR / "checkpoints"
CLASSIFIER_MODEL = CLASSIFIER_DIR / "model.pt"
EPOCH_PREDICTIONS = CLASSIFIER_DIR / "epoch_predictions.npz"
CLASSIFIER_METRICS = Path("metrics/classifier.json")
CLASSIFIER_CONFUSION = Path("metrics/classifier_confusion.json")
CLASSIFIER_HISTORY = Path("plots/classifier/history.csv")
CLASSIFIER_CONFUSION_PLOT = Path("plots/classifier/confusion.csv")
CLASSIFIER_CURVES_FIG = Path("reports/figures/classifier_curves.png")
CLASSIFIER_CONFUSION_FIG = Path("reports/figures/classifier_confusion.png")

GENERATIVE_METRICS = Path("metrics/generative")
GENERATIVE_PLOTS = Path("plots/generative")
GENERATIVE_SAMPLES = Path("explanations/generative")  # sample reconstructions, for figures
GENERATIVE_FIGURES = Path("reports/figures/generative")
CLADEC_TABLE = Path("reports/cladec_table.csv")
CLADEC_TABLE_MD = Path("reports/cladec_table.md")
CLADEC_ALPHA_FIG = Path("reports/figures/cladec_alpha_tradeoff.png")


def model_dir(name: str) -> Path:
    """models/<kind>/<variant>: e.g. models/cladec/dense-0.5, models/refae/conv, models/vae."""
    return Path("models") / name


def model_slug(name: str) -> str:
    """'cladec/dense-0.5' -> 'cladec_dense-0.5': a generative model's file name in
    metrics/generative/, plots/generative/, explanations/generative/ and
    reports/figures/generative/."""
    return name.replace("/", "_")


def slug_stage(slug: str) -> str:
    """'cladec_dense-0.5' -> 'cladec@dense-0.5': the stage that writes a generative
    model's files (model_slug's file name)."""
    return slug.replace("_", "@", 1)


SELECTION = Path("explanations/selection.npz")
SELECTION_METRICS = Path("metrics/select.json")
# the near-chance check's record (select stage); its content depends only on the
# classifier and the test split, so the stages that depend on it for their order
# (the decoders, the inside-the-model parts) rerun for nothing else
CHANCE_CHECK = Path("explanations/classifier_check.json")
EVALUATION_SET = Path("explanations/evaluation_set.npz")
EVALUATIONS = Path("explanations/evaluation")  # per-method, per-image scores
ATTRIBUTIONS = Path("explanations/attributions")
EXPLAIN_METRICS = Path("metrics/explain")
EVALUATE_METRICS = Path("metrics/evaluate.json")
EVALUATE_PLOTS = Path("plots/evaluate")
EVALUATE_TABLE = Path("reports/evaluate_table.md")
ATTRIBUTION_FIGURES = Path("reports/figures/attributions")
EVALUATE_FIG = Path("reports/figures/evaluate.png")


def attribution_file(method: str) -> Path:
    """explanations/attributions/<method>.npz"""
    return ATTRIBUTIONS / f"{method}.npz"


def evaluation_file(method: str) -> Path:
    """explanations/evaluation/<method>.npz: the method's per-image scores."""
    return EVALUATIONS / f"{method}.npz"


# inside-the-model parts (pipeline/explain/parts/<part>.py; the registry lists them)
def part_dir(part: str) -> Path:
    """explanations/<part>/: one .npz per file stem the part's compute returns, for its
    figure stage."""
    return Path("explanations") / part


def part_metrics(part: str) -> Path:
    """metrics/explain/<part>.json"""
    return EXPLAIN_METRICS / f"{part}.json"


def part_figures(part: str) -> Path:
    """reports/figures/<part>/"""
    return Path("reports/figures") / part


SUMMARY_METRICS = Path("metrics/summary.json")  # the numbers people compare (summary stage)
REPORTS = Path("reports")
REPORT = REPORTS / "index.html"  # the one page of the run (report stage)
