"""The held person crop: still while the person is, moving rarely with a walker, never losing them."""

import numpy as np

from passrt.models.crop import Crop, HeldCrop, cut, follow


def _box(cx, cy, w, h):
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def test_holds_still_while_the_box_jitters():
    rng = np.random.default_rng(0)
    for w, h in ((30, 80), (60, 160), (200, 420)):
        held = HeldCrop()
        first = held.update(_box(300, 250, w, h))
        for _ in range(200):  # a detector's jitter: a few pixels on each edge
            box = np.array(_box(300, 250, w, h)) + rng.uniform(-0.03, 0.03, 4) * h
            assert held.update(box) == first
        assert held.moves == 1


def test_follows_a_walker_rarely_and_keeps_them_inside():
    held = HeldCrop()
    for t in range(100):  # 8 pixels a frame, vtest's walkers at 10 fps
        box = _box(700 - 8 * t, 280, 40, 90)
        crop = held.update(box)
        assert crop.contains(box, held.margin), t
    assert held.moves <= 15  # a crop that followed the box would move 100 times


def test_size_changes_move_the_crop():
    held = HeldCrop()
    small = held.update(_box(300, 300, 40, 90))
    big = held.update(_box(300, 300, 90, 200))  # walked towards the camera
    assert big.side > small.side and big.contains(_box(300, 300, 90, 200), held.margin)
    again = held.update(_box(300, 300, 40, 90))  # two ladder steps smaller: the person would be tiny in it
    assert again.side < big.side


def test_a_lost_person_is_dropped_after_patience():
    held = HeldCrop(patience=3)
    crop = held.update(_box(100, 100, 40, 90))
    for _ in range(3):
        assert held.update(None) == crop
    assert held.update(None) is None and held.box is None


def test_follow_keeps_the_same_person():
    boxes = np.array([[0, 0, 50, 100], [200, 0, 230, 60]], np.float32)
    assert follow(boxes, None) == 0  # the largest first
    assert follow(boxes, (198, 2, 229, 61)) == 1  # then the one overlapping the last box
    assert follow(boxes, (400, 400, 420, 440)) is None  # gone
    assert follow(np.zeros((0, 4), np.float32), None) is None


def test_cut_and_view_map_input_pixels_back_to_the_frame():
    image = np.zeros((200, 300, 3), np.uint8)
    image[120, 280] = 255  # one bright pixel
    crop = Crop(260, 90, 64)  # reaches 24 pixels past the right edge
    x = cut(image, crop, 256)
    ys, xs = np.nonzero(x[:, :, 0] == x[:, :, 0].max())
    # input pixel centres (u + 0.5) are at frame x0 + (u + 0.5) * scale
    frame_xy = crop.view(256).to_frame(np.array([[xs.mean() + 0.5, ys.mean() + 0.5]]))
    np.testing.assert_allclose(frame_xy[0], [280.5, 120.5], atol=0.5)
    assert x[:, 162:].max() == 0  # the frame's edge (x = 300) lands at column 160: black beyond it
    moved = image.copy()
    moved[10, 10] = 255  # outside the crop: the model's input does not change at all
    assert np.array_equal(cut(moved, crop, 256), x)
