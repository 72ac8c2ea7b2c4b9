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
