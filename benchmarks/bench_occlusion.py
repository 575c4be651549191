"""Time utils.occlusion against captum's Occlusion on the same model, image, window and stride.

    pip install -r benchmarks/requirements.txt
    VCNN_OFFLINE=1 python benchmarks/bench_occlusion.py [--size 48] [--stride 16] [--repeats 3]

Both compute one forward pass per occluder position with a mean-grey (0) square, fully inside
the image. captum is given the same batch size (``perturbations_per_eval``); it is also timed
with its default of 1, which is what most users run. The script first checks that both give the
same attribution: captum's output is (p_clean - p_occluded) averaged over the windows covering
each pixel, which ``utils.occlusion.to_pixels`` reproduces from our grid.
"""
import argparse
import time

import torch

from utils.models import load_model
from utils.occlusion import occlusion, to_pixels


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--image", default="coffee")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from captum.attr import Occlusion

    torch.set_grad_enabled(False)
    model = load_model(args.model, device="cpu")
    x = model.spec.preprocess(args.image)
    target = int(model(x).argmax())

    def ours():
        return occlusion(model, x, target, size=args.size, stride=args.stride, batch_size=args.batch)

    def prob(inp):
        return model(inp).softmax(dim=1)

    captum = Occlusion(prob)

    def theirs(per_eval):
        return captum.attribute(x, sliding_window_shapes=(3, args.size, args.size),
                                strides=(3, args.stride, args.stride), baselines=0.0,
                                target=target, perturbations_per_eval=per_eval)

    result = ours()
    mine = result["clean_prob"][0] - to_pixels(result["prob"][0], args.size, args.stride, x.shape[-2:])
    ref = theirs(args.batch)[0, 0]
    covered = ~torch.isnan(mine)
    agree = torch.allclose(mine[covered], ref[covered], atol=1e-5)
    n = len(result["tops"]) * len(result["lefts"])
    print(f"model {model.spec.name}, image {args.image}, window {args.size}, stride {args.stride}: "
          f"{n} positions; same attribution as captum: {agree}")

    t_ours = best_of(ours, args.repeats)
    t_batched = best_of(lambda: theirs(args.batch), args.repeats)
    t_default = best_of(lambda: theirs(1), 1)
    print(f"ours (batch {args.batch}):          {t_ours:6.2f} s")
    print(f"captum (perturbations_per_eval={args.batch}): {t_batched:6.2f} s  -> ratio captum/ours {t_batched / t_ours:.2f}")
    print(f"captum (default, 1 per eval):  {t_default:6.2f} s  -> ratio captum/ours {t_default / t_ours:.2f}")
    print(f"torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
