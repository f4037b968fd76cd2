"""Demosaicing: colours come out right for every Bayer layout, torch agrees with OpenCV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evseg_ros.device import DeviceError
from evseg_ros.pipeline.debayer import (
    SUPPORTED_ENCODINGS,
    Debayer,
    debayer_opencv,
    debayer_torch,
)

BAYER = ("bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")
COLOUR_INDEX = {"r": 0, "g": 1, "b": 2}


def mosaic(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """Sample ``rgb`` the way a sensor named ``encoding`` does, from the name itself.

    The four letters are the top-left 2x2 block read row by row (ROS/GenICam naming), e.g.
    ``bayer_grbg8``: G R on even rows, B G on odd rows. Deliberately independent of the tables
    in the module under test.
    """
    letters = encoding.removeprefix("bayer_").removesuffix("8")
    out = np.empty(rgb.shape[:2], np.uint8)
    for position, letter in enumerate(letters):
        row, col = divmod(position, 2)
        out[row::2, col::2] = rgb[row::2, col::2, COLOUR_INDEX[letter]]
    return out


def smooth_rgb(height: int = 32, width: int = 48) -> np.ndarray:
    """Linear ramps, which bilinear interpolation reproduces exactly inside the image."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([20 + 4 * x, 30 + 5 * y, 200 - 2 * x - 2 * y], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("encoding", BAYER)
def test_known_colours_come_back_for_every_layout(encoding):
    solid = np.empty((16, 20, 3), np.uint8)
    solid[:] = (200, 100, 30)
    raw = mosaic(solid, encoding)
    cv_rgb = debayer_opencv(raw, encoding)
    torch_rgb = debayer_torch(torch.from_numpy(raw), encoding).numpy()
    np.testing.assert_array_equal(cv_rgb[2:-2, 2:-2], solid[2:-2, 2:-2])
    np.testing.assert_array_equal(torch_rgb, solid)  # mirrored borders are exact too
    ramp = smooth_rgb()
    raw = mosaic(ramp, encoding)
    for result in (debayer_opencv(raw, encoding), debayer_torch(torch.from_numpy(raw), encoding)):
        inner = np.asarray(result)[2:-2, 2:-2].astype(int)
        assert np.abs(inner - ramp[2:-2, 2:-2]).max() <= 1, encoding


@pytest.mark.parametrize("encoding", BAYER)
@pytest.mark.parametrize("shape", [(24, 32), (17, 23)])
def test_torch_matches_opencv_bilinear_in_the_interior(encoding, shape):
    raw = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
    expected = debayer_opencv(raw, encoding)
    result = debayer_torch(torch.from_numpy(raw), encoding)
    assert result.shape == (*shape, 3) and result.dtype == torch.uint8
    np.testing.assert_array_equal(result.numpy()[1:-1, 1:-1], expected[1:-1, 1:-1])


def test_debayer_front_end_on_cpu_with_both_backends():
    raw = mosaic(smooth_rgb(), "bayer_rggb8")
    opencv = Debayer("cpu")
    assert opencv.backend == "opencv"
    out = opencv(raw, "bayer_rggb8")
    assert isinstance(out, np.ndarray) and out.shape == (32, 48, 3)
    via_torch = Debayer("cpu", backend="torch")(raw, "bayer_rggb8")
    assert isinstance(via_torch, torch.Tensor)
    np.testing.assert_array_equal(via_torch.numpy()[1:-1, 1:-1], out[1:-1, 1:-1])
    rgb = smooth_rgb()
    for debayer in (opencv, Debayer("cpu", backend="torch")):
        np.testing.assert_array_equal(np.asarray(debayer(rgb, "rgb8")), rgb)
        np.testing.assert_array_equal(np.asarray(debayer(rgb[:, :, ::-1].copy(), "bgr8")), rgb)
        gray = np.asarray(debayer(rgb[:, :, 0].copy(), "mono8"))
        assert gray.shape == (32, 48, 3) and (gray == rgb[:, :, :1]).all()


def test_unknown_encodings_and_shapes_are_clear_errors():
    debayer = Debayer("cpu")
    with pytest.raises(ValueError, match=r"'bayer_rggb16'.*bayer_rggb8.*mono8"):
        debayer(np.zeros((4, 4), np.uint16), "bayer_rggb16")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        debayer(np.zeros((4, 4, 3), np.uint8), "bayer_rggb8")
    with pytest.raises(ValueError, match="uint8"):
        debayer_torch(torch.zeros((4, 4), dtype=torch.int16), "bayer_rggb8")
    with pytest.raises(ValueError, match="Bayer"):
        debayer_torch(torch.zeros((4, 4), dtype=torch.uint8), "mono8")
    with pytest.raises(DeviceError, match="device must be one of auto, cpu, cuda or cuda:N"):
        Debayer("tpu")
    assert set(BAYER) < set(SUPPORTED_ENCODINGS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_with_what_to_set():
    with pytest.raises(DeviceError, match="set device to 'cpu' or 'auto'"):
        Debayer("cuda")
    assert Debayer("auto").device == "cpu" and Debayer("auto").backend == "opencv"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    raw = np.random.default_rng(1).integers(0, 256, (64, 80), dtype=np.uint8)
    debayer = Debayer("cuda")
    assert debayer.backend == "torch" and Debayer("auto").device == "cuda"
    out = debayer(raw, "bayer_gbrg8")  # a host mosaic goes up, RGB stays on the GPU
    assert out.device.type == "cuda"
    np.testing.assert_array_equal(
        out.cpu().numpy(), debayer_torch(torch.from_numpy(raw), "bayer_gbrg8").numpy()
    )
    rgb = smooth_rgb()
    np.testing.assert_array_equal(debayer(rgb[:, :, ::-1].copy(), "bgr8").cpu().numpy(), rgb)
    with pytest.raises(ValueError, match="opencv"):
        Debayer("cuda", backend="opencv")
