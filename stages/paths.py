"""Where every stage reads and writes, relative to the repository root (see dvc.yaml)."""

from pathlib import Path

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
GENERATIVE_FIGURES = Path("reports/figures/generative")
CLADEC_TABLE = Path("reports/cladec_table.csv")
CLADEC_TABLE_MD = Path("reports/cladec_table.md")
CLADEC_ALPHA_FIG = Path("reports/figures/cladec_alpha_tradeoff.png")


def model_dir(name: str) -> Path:
    """models/<kind>/<variant>: e.g. models/cladec/dense-0.5, models/refae/conv, models/vae."""
    return Path("models") / name


SELECTION = Path("explanations/selection.npz")
SELECTION_METRICS = Path("metrics/select.json")
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


INSIDE_PARTS = (
    "feature_maps",
    "activation_max",
    "ice",
    "instanceflow",
    "vae_walks",
    "cladec",
    "grand_tour",
    "epochs",
)


def part_dir(part: str) -> Path:
    """explanations/<part>/: the arrays an inside-the-model stage leaves for its figures."""
    return Path("explanations") / part


def part_metrics(part: str) -> Path:
    return Path("metrics/explain") / f"{part}.json"


def part_figures(part: str) -> Path:
    return Path("reports/figures") / part
