"""Argument types the ``evseg`` subcommands share (plain argparse, no ROS, no torch)."""

from __future__ import annotations

import argparse


def image_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` as ``(width, height)``; an argparse error naming the text otherwise."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        msg = f"expected WIDTHxHEIGHT, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if width <= 0 or height <= 0:
        msg = f"sizes must be positive, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return width, height
