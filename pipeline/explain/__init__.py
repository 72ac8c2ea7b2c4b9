"""Attribution methods behind one calling convention:

    attribute(model, images, targets, **method_params) -> np.ndarray

`images` is a float tensor N×C×H×W in [0, 1], `targets` the class per image. The result
is float32, N×C×H×W for pixel-gradient methods (saliency, guided backprop, integrated
gradients, SHAP) and N×1×H×W for methods that score regions (Grad-CAM, LIME).
`pixel_map` reduces either to one N×H×W map, the form every evaluation uses; all four
live in `pipeline.explain.registry`. This package imports nothing itself, so that figure
stages can read the numpy helpers of its modules without loading torch.
"""
