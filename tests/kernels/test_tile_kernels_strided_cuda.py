"""The NHWC tile kernels' row strides and grouped convs on CUDA (tiles_nhwc.cu through conv_tiles), fp32
and fp16, against dense F.conv2d masked to the active tiles: the CUDA side of test_tile_kernels_strided.py
(the same NaN-padded rows, the op's matrix). Where fp16 kHWC8 rows (a 12-channel head in rows of 16) and
grouped convs run in the TensorRT plugin, on the GPU.
"""

import pytest
import torch

from tests.kernels.test_op_cpu import CONV_CASES, case_id, seed_of
from tests.kernels.test_tile_kernels_strided import run

# No GPU: skip (a failure under PASSRT_REQUIRE_GPU=1); a GPU but a failed CUDA build: fail (tests/conftest.py).
pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("passrt_cuda_op")]

HEAD = (3, 1, 1, 1, 1, 96, 12, 10, 13, 1)  # SSDLite's 12-channel head


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CONV_CASES + [HEAD], ids=case_id)
@pytest.mark.parametrize("tile", [1, 3, 8])
@pytest.mark.parametrize("mask_kind", ["all-on", "random"])
def test_padded_rows_match_dense_on_cuda(case, tile, mask_kind, dtype):
    run(case, tile, mask_kind, seed=seed_of(case, tile, mask_kind, "strided-cuda"), device="cuda", dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CONV_CASES + [HEAD], ids=case_id)
@pytest.mark.parametrize("residual", ["separate", "aliased"])
def test_padded_rows_with_residual_on_cuda(case, residual, dtype):
    run(case, 3, "random", residual=residual, seed=seed_of(case, residual, "strided-cuda"), device="cuda", dtype=dtype)
