import numpy as np
import pytest
from PIL import Image

from data_prep.buckets import DEFAULT_BUCKETS, fit_bucket, parse_buckets
from data_prep.images import ImageOptions, ImageRejected, crop_to_ink, load_gray, pad_to_bucket, process_gray


def test_fit_bucket_picks_the_smallest_that_holds_the_image():
    assert fit_bucket(50, 30) == (60, 40)
    assert fit_bucket(61, 40) == (120, 40)
    assert fit_bucket(300, 90) == (360, 100)
    assert fit_bucket(1601, 10) is None
    for w, h in [(1, 1), (333, 77), (999, 399), (1600, 1600)]:
        bw, bh = fit_bucket(w, h)
        assert bw >= w and bh >= h
        assert not any(a >= w and b >= h and a * b < bw * bh for a, b in DEFAULT_BUCKETS)


def test_parse_buckets():
    assert parse_buckets("60x40, 120X50") == ((60, 40), (120, 50))
    with pytest.raises(ValueError, match="WxH"):
        parse_buckets("60by40")


def test_crop_keeps_exactly_the_ink_plus_margin():
    img = np.full((100, 200), 255, np.uint8)
    img[30:40, 50:120] = 0
    out = crop_to_ink(img, threshold=200, margin=5)
    assert out.shape == (10 + 10, 70 + 10)
    assert (out[5:15, 5:75] == 0).all() and (out[:5] == 255).all() and (out[:, :5] == 255).all()


def test_no_ink_is_rejected():
    with pytest.raises(ImageRejected, match="no ink"):
        process_gray(np.full((20, 20), 250, np.uint8), ImageOptions())


def test_pad_puts_ink_top_left_on_white():
    img = np.zeros((30, 50), np.uint8)
    out = pad_to_bucket(img)
    assert out.shape == (40, 60)
    assert (out[:30, :50] == 0).all() and (out[30:] == 255).all() and (out[:, 50:] == 255).all()
    with pytest.raises(ImageRejected, match="too large"):
        pad_to_bucket(np.zeros((1700, 10), np.uint8))


def test_downsample_then_pad():
    img = np.full((200, 400), 255, np.uint8)
    img[50:150, 50:350] = 0
    out = process_gray(img, ImageOptions(margin=0, downsample=2, buckets=DEFAULT_BUCKETS))
    assert out.shape == (50, 160)  # 150x50 after halving -> bucket 160x50
    assert out[:50, :150].mean() < 10
    # auto buckets are fitted once every crop is known: a single crop comes back unpadded
    assert process_gray(img, ImageOptions(margin=0, downsample=2)).shape == (50, 150)


def test_transparent_palette_page_composites_onto_white(tmp_path):
    """The raw im2latex pages: palette PNG, ink drawn as alpha over a transparent background."""
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[10:20, 10:30, 3] = 255  # opaque black ink; the rest is transparent black
    Image.fromarray(rgba, "RGBA").quantize(4).save(tmp_path / "p.png")
    im = Image.open(tmp_path / "p.png")
    assert im.mode == "P" and "transparency" in im.info
    gray = load_gray(tmp_path / "p.png")
    assert (gray[10:20, 10:30] < 50).all() and (gray[:10] == 255).all()


def test_grayscale_from_rgb_jpeg(tmp_path):
    rgb = np.full((30, 40, 3), 255, np.uint8)
    rgb[10:20, 10:20] = (0, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "a.jpg")
    gray = load_gray(tmp_path / "a.jpg")
    assert gray.shape == (30, 40) and gray.dtype == np.uint8 and gray[15, 15] < 60 and gray[2, 2] > 240


def test_exif_rotation_is_applied(tmp_path):
    gray = np.full((20, 60), 255, np.uint8)
    gray[:, :10] = 0  # ink on the left of a wide image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(gray).save(tmp_path / "r.jpg", exif=exif)
    loaded = load_gray(tmp_path / "r.jpg")
    assert loaded.shape == (60, 20) and loaded[:10].mean() < 60 and loaded[-10:].mean() > 200


def test_16_bit_images_scale_by_bit_depth_not_by_their_own_range(tmp_path):
    blank = np.full((20, 30), 65535, np.uint16)
    Image.fromarray(blank).save(tmp_path / "blank.png")
    assert (load_gray(tmp_path / "blank.png") == 255).all(), "a blank 16-bit page stays white"
    page = blank.copy()
    page[5, 5], page[10, 10] = 65000, 0  # near-white noise and one real ink pixel
    Image.fromarray(page).save(tmp_path / "page.png")
    gray = load_gray(tmp_path / "page.png")
    assert (gray[5, 5], gray[10, 10]) == (253, 0)
