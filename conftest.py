"""Tests never download and always run in fast mode; notebooks inherit these settings."""
import os

os.environ.setdefault("VCNN_OFFLINE", "1")
os.environ.setdefault("VCNN_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
