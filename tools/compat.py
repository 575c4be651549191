"""Run the tests with the ipywidgets that Google Colab ships (7.7.1), not the 8.x of a local
install: Colab's setup cell keeps Colab's own ipywidgets, so this is the version most students
run the explorers with.

ipywidgets 7 and the two packages it needs at that version are installed into a folder of
their own (``.compat/ipywidgets7``, ignored by git), which goes in front of the project's
environment on ``PYTHONPATH``: nothing in ``.venv`` changes. Then the widget tests, and one
notebook per family of method in fast mode (hooks, gradients, CAM, optimisation), run there;
their kernels inherit the same path.

    python tools/compat.py            # exits with pytest's status
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OVERLAY = ROOT / ".compat" / "ipywidgets7"
COLAB_WIDGETS = ["ipywidgets==7.7.1", "widgetsnbextension==3.6.6", "jupyterlab_widgets==1.1.11",
                 "ipython_genutils==0.2.0"]
TESTS = ["tests/test_widgets.py", "tests/test_in_place.py",
         "notebooks/01_filters_and_activations.ipynb", "notebooks/04_saliency_and_class_models.ipynb",
         "notebooks/05_cam_and_gradcam.ipynb", "notebooks/10_feature_inversion.ipynb"]


def main():
    if not (OVERLAY / "ipywidgets").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                        str(OVERLAY), *COLAB_WIDGETS], check=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(OVERLAY),
                                                                    os.environ.get("PYTHONPATH")])))
    version = subprocess.run([sys.executable, "-c", "import ipywidgets; print(ipywidgets.__version__)"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
    print(f"ipywidgets {version} (as Colab ships it)", flush=True)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *TESTS],
                          cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
