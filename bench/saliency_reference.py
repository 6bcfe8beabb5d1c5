#!/usr/bin/python3
"""Reference point for bench/saliency_bench: Grad-CAM per frame the way the popular
Python tool pytorch-grad-cam computes it, on the same ResNet-18 (the architecture of
bench/make_resnet18.py, imported from it; random weights, torch.manual_seed(0)).

A reimplementation written for attend, not pytorch-grad-cam itself (which is not
installable here): it reproduces what that tool's ActivationsAndGradients, BaseCAM and
GradCAM classes do for one call `cam(input_tensor=x, targets=None)`:
  - forward hooks on the target layer (layer4): one saves the activation
    (`output.cpu().detach()`), the other registers a tensor hook on the output that
    captures the gradient (pytorch-grad-cam avoids module backward hooks);
  - the model in eval mode with its parameters left requiring gradients, as a user's
    model is handed to BaseCAM; a plain forward with autograd recording everything;
  - targets = argmax of the outputs (ClassifierOutputTarget), `model.zero_grad()`,
    loss = sum of each image's target score, `loss.backward(retain_graph=True)` (so
    backward runs through the whole network, computing every parameter's gradient);
  - numpy post-processing per image: weights = mean of the gradients over (h, w), cam =
    sum over channels of weights * activations, ReLU, scale_cam_image (min subtracted,
    divided by max + 1e-7, then resized to the input size per image; cv2.resize's
    bilinear with half-pixel centres is done with torch's interpolate,
    align_corners=False, which matches it for enlargement), then aggregate_multi_layers
    (ReLU, mean over the one layer, scale_cam_image again).

Times per frame, medians, with torch.set_num_threads(N): the forward pass alone (under
torch.no_grad(), as attend's SaliencyModel::logits) and the whole Grad-CAM call, at
batch 1 and 8, inputs [B,3,224,224]. Run with Debian's python3-torch (the system
interpreter):
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/saliency_reference.py --threads 2
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_resnet18 import ResNet18  # noqa: E402


class ActivationsAndGradients:
    """pytorch-grad-cam's ActivationsAndGradients: forward hooks on the target layers."""

    def __init__(self, model, target_layers):
        self.model = model
        self.gradients = []
        self.activations = []
        self.handles = []
        for layer in target_layers:
            self.handles.append(layer.register_forward_hook(self.save_activation))
            self.handles.append(layer.register_forward_hook(self.save_gradient))

    def save_activation(self, module, inputs, output):
        self.activations.append(output.cpu().detach())

    def save_gradient(self, module, inputs, output):
        if not hasattr(output, "requires_grad") or not output.requires_grad:
            return

        def store_grad(grad):
            self.gradients = [grad.cpu().detach()] + self.gradients

        output.register_hook(store_grad)

    def __call__(self, x):
        self.gradients = []
        self.activations = []
        return self.model(x)


def scale_cam_image(cam, target_size=None):
    """pytorch-grad-cam's scale_cam_image; target_size is (width, height) as for cv2."""
    result = []
    for img in cam:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if target_size is not None:
            t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
            img = F.interpolate(t, size=(target_size[1], target_size[0]), mode="bilinear",
                                align_corners=False)[0, 0].numpy()
        result.append(img)
    return np.float32(result)


class GradCAM:
    """BaseCAM.forward with GradCAM's weights (mean of the gradients over h, w)."""

    def __init__(self, model, target_layers):
        self.model = model.eval()
        self.target_layers = target_layers
        self.activations_and_grads = ActivationsAndGradients(self.model, target_layers)

    def __call__(self, input_tensor):
        outputs = self.activations_and_grads(input_tensor)
        categories = np.argmax(outputs.cpu().data.numpy(), axis=-1)
        self.model.zero_grad()
        loss = sum([output[category] for category, output in zip(categories, outputs)])
        loss.backward(retain_graph=True)
        activations = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]
        grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]
        size = (input_tensor.size(-1), input_tensor.size(-2))
        per_layer = []
        for a, g in zip(activations, grads):
            weights = np.mean(g, axis=(2, 3))
            cam = (weights[:, :, None, None] * a).sum(axis=1)
            cam = np.maximum(cam, 0)
            per_layer.append(scale_cam_image(cam, size)[:, None, :])
        cams = np.maximum(np.concatenate(per_layer, axis=1), 0)
        return scale_cam_image(np.mean(cams, axis=1))


def median_ms_per_frame(f, batch, repeats):
    f()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3 / batch)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ResNet18().eval()
    # The forward alone runs on a copy without the hooks.
    plain = ResNet18().eval()
    plain.load_state_dict(model.state_dict())
    cam = GradCAM(model, [model.layer4])
    generator = torch.Generator().manual_seed(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.rand(batch, 3, 224, 224, generator=generator)

        def forward():
            with torch.no_grad():
                plain(x)

        forward_ms = median_ms_per_frame(forward, batch, args.repeats)
        gradcam_ms = median_ms_per_frame(lambda: cam(x), batch, args.repeats)
        print(f"batch {batch}: forward {forward_ms:.2f} ms/frame, gradcam {gradcam_ms:.2f} ms/frame, "
              f"ratio {gradcam_ms / forward_ms:.2f}")


if __name__ == "__main__":
    main()
