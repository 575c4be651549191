"""Textures and style transfer on this machine: time and quality, per network (notebooks 07, 08).

    python benchmarks/bench_style.py            # the offline networks, the notebooks' sizes
    python benchmarks/bench_style.py --quick    # 64 px, 30 iterations

For each network it prints the time per evaluation (one forward and backward), the
iterations and evaluations L-BFGS made, and the quality numbers of the notebooks, computed
from pixels without any network: the spectrum distance of a texture to its source (dB,
lower is closer), and for a stylised photo its palette's distance to the painting (gray
levels), its layout's correlation with the photo and its finest detail relative to the
painting's. Timings on a shared machine are upper bounds: the load average is printed.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from utils import inversion, style  # noqa: E402
from utils.images import load_image  # noqa: E402
from utils.models import load_model  # noqa: E402


def networks():
    lite = load_model("efficientnet_lite0", "cpu", verbose=False)
    vgg, _ = style.average_pooling(load_model("vgg19", "cpu", weights="random"))
    return {"efficientnet_lite0 (trained)": lite, "vgg19 (random weights)": vgg}


def textures(nets, size, steps):
    print(f"\ntexture synthesis, {size} px, {steps} L-BFGS iterations, faint-noise start")
    for label, net in nets.items():
        for name in ("brick", "gravel", "grass"):
            x = net.spec.preprocess(name, size=size)
            start = time.perf_counter()
            r = style.synthesise_texture(net, x, steps=steps, noise=0.1, progress=False)
            seconds = time.perf_counter() - start
            photo = np.asarray(load_image(name).resize((size, size), Image.BICUBIC))
            d = style.spectrum_distance(net.spec.deprocess(r.image), photo)
            print(f"  {label:29s} {name:6s} {seconds:6.1f} s, {r.evaluations} evaluations "
                  f"({seconds / r.evaluations * 1000:4.0f} ms each), spectrum distance {d:4.1f} dB")


def stylised(nets, size, steps, ratio_at_192=1e-6, tv_weight=0.1):
    ratio = ratio_at_192 * (192 / size) ** 2
    print(f"\nstyle transfer, palace in The Starry Night, {size} px, {steps} iterations from the "
          f"photo, α/β = {ratio:.0e}, TV {tv_weight:g}")
    painting = style.style_image("starry_night", verbose=False)
    for label, net in nets.items():
        c, s = (net.spec.preprocess(image, size=size) for image in ("palace", painting))
        start = time.perf_counter()
        r = style.transfer_style(net, c, s, ratio=ratio, steps=steps, init="content",
                                 tv_weight=tv_weight, progress=False)
        seconds = time.perf_counter() - start
        rgb, _, art = (net.spec.deprocess(t) for t in (r.image, c, s))
        fine = style.band_energies(rgb)[0].sum() / style.band_energies(art)[0].sum()
        print(f"  {label:29s} {seconds:6.1f} s, {r.evaluations} evaluations, palette "
              f"{style.colour_distance(rgb, art):4.1f} from the painting, layout "
              f"{float(inversion.layout_correlation(r.image, c, net.spec, side=12)[0]):.2f}, fine detail {float(fine):.2f} × the painting's")


def main():
    quick = "--quick" in sys.argv
    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()[0]:.1f}")
    nets = networks()
    textures(nets, 64 if quick else 96, 30 if quick else 200)
    stylised(nets, 64 if quick else 96, 30 if quick else 100)
    stylised({k: v for k, v in nets.items() if "lite0" in k}, 96 if quick else 192, 30 if quick else 100)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
