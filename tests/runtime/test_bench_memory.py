"""`bench` holds one block of frames at a time, so its memory does not grow with --frames."""

import gc
import weakref

from passrt.runtime.frames import stream_frames
from tests.runtime.test_io import write_clip


def test_frame_stream_holds_one_block(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", frames=47)
    stream = stream_frames(str(clip), count=45, start=1, block=10)
    assert stream.expected == 45 and len(stream.warmup(3)) == 3
    earlier, sizes, first_pixels = [], [], []
    for block in stream.blocks():
        sizes.append(len(block))
        first_pixels.append(int(block[0][2, 60, 0]))
        gc.collect()
        assert sum(r() is not None for r in earlier) == 0  # nothing of earlier blocks is kept
        earlier += [weakref.ref(image) for image in block]
        del block
    assert sizes == [10, 10, 10, 10, 5]
    # frames 1, 11, 21, ... start the blocks (write_clip paints frame i with grey level 20 i)
    assert all(abs(p - (1 + 10 * k) * 20 % 255) <= 8 for k, p in enumerate(first_pixels))
