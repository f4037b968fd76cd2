from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from evseg_ros.device import DeviceError
from evseg_ros.geometry.calibration import calibration_from_dict
from evseg_ros.geometry.frame_remap import (
    FrameRemapper,
    FrameShapeError,
    RemapBackend,
    normalised_grid,
)


@pytest.fixture(scope="module")
def warped_rig(sim_calibration):
    """Distorted frame camera, cropped and scaled onto a 300x170 output grid."""
    data = sim_calibration.to_dict()
    data["frame_camera"]["distortion"] = [-0.3, 0.1, 0.001, -0.001, 0.0]
    data["output"] = {"width": 300, "height": 170, "crop": [5.0, 25.0, 310.0, 175.7]}
    return calibration_from_dict(data)


def _smooth_image(channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = rng.random((240, 320, channels)).astype(np.float32) * 255
    return cv2.GaussianBlur(noise, (0, 0), 3).reshape(240, 320, channels)


def test_grid_sample_matches_cv2_remap(warped_rig):
    image = _smooth_image()
    cpu = FrameRemapper(warped_rig, "cpu")
    torch_cpu = FrameRemapper(warped_rig, "cpu", backend="torch")
    assert cpu.backend is RemapBackend.OPENCV and torch_cpu.backend is RemapBackend.TORCH
    expected = cpu.remap(image)
    got = torch_cpu.remap(image)
    assert expected.shape == got.shape == (170, 300, 3)
    interior = (slice(2, -2), slice(2, -2))
    diff = np.abs(expected - got)[interior]
    print(f"\ncv2.remap vs grid_sample (float32, 0..255): max |diff| {diff.max():.2e}")
    assert diff.max() < 0.01  # same sample points: float rounding only
    # and the maps really move things: not the identity
    assert np.abs(expected - image[:170, :300]).mean() > 1.0


def test_uint8_and_tensor_inputs(warped_rig):
    image = np.clip(_smooth_image(), 0, 255).astype(np.uint8)
    by_cv2 = FrameRemapper(warped_rig, "cpu").remap(image)
    remapper = FrameRemapper(warped_rig, "cpu", backend="torch")
    by_torch = remapper.remap(image)
    assert by_torch.dtype == np.uint8 and by_torch.shape == by_cv2.shape
    assert np.abs(by_torch.astype(int) - by_cv2)[2:-2, 2:-2].max() <= 1
    gray = remapper.remap(image[..., 0])
    assert gray.shape == (170, 300)
    tensor = torch.from_numpy(_smooth_image()).permute(2, 0, 1)
    batch = remapper.remap(torch.stack([tensor, tensor * 0.5]))
    assert batch.shape == (2, 3, 170, 300) and batch.dtype == torch.float32
    torch.testing.assert_close(batch[1], batch[0] * 0.5, atol=1e-4, rtol=1e-5)
    single = remapper.remap(tensor)
    torch.testing.assert_close(single, batch[0])


def test_normalised_grid_puts_pixel_centres_on_plus_minus_one():
    map_x = np.array([[0.0, 319.0, 159.5]], np.float32)
    map_y = np.array([[0.0, 239.0, 119.5]], np.float32)
    grid = normalised_grid(map_x, map_y, 320, 240)
    np.testing.assert_allclose(grid[0], [[-1, -1], [1, 1], [0, 0]], atol=1e-6)


def test_identity_fast_path(sim_calibration):
    remapper = FrameRemapper(sim_calibration, "cpu")
    assert remapper.backend is RemapBackend.IDENTITY
    image = np.zeros((240, 320, 3), np.uint8)
    assert remapper.remap(image) is image
    # the identity maps agree: forcing OpenCV returns the same pixels
    forced = FrameRemapper(sim_calibration, "cpu", backend="opencv")
    noisy = np.random.default_rng(2).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    np.testing.assert_array_equal(forced.remap(noisy), noisy)


def test_frame_features_land_where_events_do(warped_rig):
    """A dot at a raw frame pixel shows up at the output pixel the event path uses."""
    camera = warped_rig.frame_camera
    ideal = np.array([100.0, 140.0])  # undistorted frame pixel
    rx, ry = camera.distort_pixels(ideal[:1], ideal[1:])
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    dot = np.exp(-((xx - rx[0]) ** 2 + (yy - ry[0]) ** 2) / (2 * 2.0**2)).astype(np.float32)
    out = FrameRemapper(warped_rig, "cpu").remap(dot)
    vv, uu = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    weights = out / out.sum()
    centroid = np.array([(uu * weights).sum(), (vv * weights).sum()])
    expected = warped_rig.frame_to_output @ np.array([ideal[0], ideal[1], 1.0])
    np.testing.assert_allclose(centroid, expected[:2], atol=0.05)


def test_bad_frames_and_options(warped_rig):
    remapper = FrameRemapper(warped_rig, "cpu")
    with pytest.raises(FrameShapeError, match=r"\(240, 300, 3\).*320x240"):
        remapper.remap(np.zeros((240, 300, 3), np.uint8))
    with pytest.raises(TypeError, match="torch"):
        remapper.remap(torch.zeros(3, 240, 320))
    with pytest.raises(DeviceError, match="device must be one of auto, cpu, cuda or cuda:N"):
        FrameRemapper(warped_rig, "tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_with_what_to_set(warped_rig):
    with pytest.raises(DeviceError, match="set device to 'cpu' or 'auto'"):
        FrameRemapper(warped_rig, "cuda")
    assert FrameRemapper(warped_rig, "auto").backend is RemapBackend.OPENCV


def test_channels_last_tensors_come_back_as_the_numpy_path_gives_them(warped_rig, sim_calibration):
    image = np.clip(_smooth_image(), 0, 255).astype(np.uint8)
    remapper = FrameRemapper(warped_rig, "cpu", backend="torch")
    got = remapper.remap_image(torch.from_numpy(image))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.uint8
    np.testing.assert_array_equal(got.numpy(), remapper.remap_image(image))
    gray = remapper.remap_image(torch.from_numpy(image[..., 0].copy()))
    assert tuple(gray.shape) == (170, 300)
    frame = torch.zeros((240, 320, 3), dtype=torch.uint8)
    assert FrameRemapper(sim_calibration, "cpu").remap_image(frame) is frame  # identity grid
    with pytest.raises(TypeError, match="torch"):
        FrameRemapper(warped_rig, "cpu").remap_image(torch.from_numpy(image))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(warped_rig):
    image = _smooth_image()
    gpu = FrameRemapper(warped_rig, "auto")
    assert gpu.backend is RemapBackend.TORCH and gpu.device == "cuda"
    tensor = torch.from_numpy(image).permute(2, 0, 1).cuda()
    got = gpu.remap(tensor).permute(1, 2, 0).cpu().numpy()
    expected = FrameRemapper(warped_rig, "cpu").remap(image)
    assert np.abs(got - expected)[2:-2, 2:-2].max() < 0.01
    # the demosaiced frame's layout: (H, W, 3) uint8 in, the same out, still on the GPU
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    on_gpu = gpu.remap_image(torch.from_numpy(pixels).cuda())
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.uint8
    cpu_torch = FrameRemapper(warped_rig, "cpu", backend="torch").remap_image(pixels)
    assert np.abs(on_gpu.cpu().numpy().astype(int) - cpu_torch)[2:-2, 2:-2].max() <= 1
    with pytest.raises(ValueError, match="CPU only"):
        FrameRemapper(warped_rig, "cuda", backend="opencv")
