"""The explorer's Streamlit page; `make app` (pipeline/explorer/serve.py) runs it after
loading the model. Streamlit reruns this script on every change of a widget, so it only
lays out what `pipeline.explorer.logic` computes; maps already computed for the same
image, method and class come from Streamlit's cache."""

from __future__ import annotations

import sys

import numpy as np
import streamlit as st

from pipeline.errors import PipelineError
from pipeline.explorer import logic
from pipeline.explorer.serve import page_explorer, parse_args

UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
LEGEND = (
    "Each map is scaled by its own largest |value|, as in the report. Signed maps: red is "
    "evidence for the class, blue against it, white 0. Unsigned maps: dark is 0, bright "
    "the strongest."
)


@st.cache_data(max_entries=512, show_spinner=False)
def cached_map(_explorer: logic.Explorer, key: str, image: np.ndarray, name: str, target: int):
    """`logic.explain`, computed once per (model files, image, method, class)."""
    return logic.explain(_explorer, image, name, target)


def pick_image(explorer: logic.Explorer) -> tuple[np.ndarray, str] | None:
    """The image the user chose in the sidebar (test split or upload) and a caption."""
    source = st.sidebar.radio("Image", ["test image", "upload"], horizontal=True)
    if source == "test image":
        index = st.sidebar.number_input(
            f"test image (0 to {explorer.test_count - 1})", 0, explorer.test_count - 1, 0
        )
        image, label = explorer.test_image(int(index))
        return image, f"test image {index}, true class: {explorer.class_names[label]}"
    upload = st.sidebar.file_uploader("an image file", type=UPLOAD_TYPES)
    if upload is None:
        st.info("Upload an image in the sidebar (or pick a test image).")
        return None
    try:
        image = logic.fit_image(upload.getvalue(), explorer.input_shape)
    except PipelineError as exc:
        st.error(str(exc))
        return None
    c, h, w = explorer.input_shape
    return image, f"{upload.name}, as the model takes it ({'grey' if c == 1 else 'RGB'}, {h}×{w})"


def show_prediction(explorer: logic.Explorer, probs: np.ndarray) -> None:
    top = logic.top_classes(probs, explorer.class_names, k=min(5, len(probs)))
    st.markdown(f"**Prediction: {top[0][1]}** ({top[0][2]:.1%})")
    rows = "\n".join(f"| {name} | {p:.2%} |" for _, name, p in top)
    st.markdown(f"| top classes | probability |\n|---|---|\n{rows}")


def main() -> None:
    st.set_page_config(page_title="xai-pipeline explorer", layout="wide")
    args = parse_args(sys.argv[1:])
    explorer = page_explorer(args)
    key = f"{args.model}|{args.params}"
    st.title("Explorer")
    chosen = pick_image(explorer)
    titles = logic.method_titles(explorer.net)
    methods = st.sidebar.multiselect(
        "Methods",
        list(titles),
        default=[m for m in logic.CHEAP_METHODS if m in titles],
        format_func=titles.get,
    )
    names = explorer.class_names
    target_choice = st.sidebar.selectbox(
        "Explain the class", ["predicted", *range(len(names))], format_func=lambda c: (
            "the predicted one" if c == "predicted" else f"{c}: {names[c]}"
        ),
    )  # fmt: skip
    if chosen is None:
        return
    image, caption = chosen
    probs = logic.probabilities(explorer, image)
    target = int(probs.argmax()) if target_choice == "predicted" else int(target_choice)
    left, right = st.columns([1, 3])
    with left:
        st.image(logic.shown_image(image), caption=caption, width=224)
        show_prediction(explorer, probs)
    with right:
        st.markdown(f"**Maps for class {names[target]}** ({probs[target]:.1%})")
        st.caption(LEGEND)
        columns = st.columns(4)
        for i, name in enumerate(methods):
            with columns[i % 4]:
                result = cached_map(explorer, key, image, name, target)
                kind = "signed" if result.signed else "unsigned"
                st.image(result.panel, width=224)
                st.caption(f"{name} ({kind}), {result.seconds:.2f} s")


if __name__ == "__main__":  # as Streamlit runs it
    main()
