#!/usr/bin/env python3
"""Writes the PLMImage parity fixtures under Tests/Fixtures/images/.

Inputs are small files made here (synthetic edge cases, downscaled scikit-image photographs, a
short video made with the ffmpeg command). Expected outputs come from transformers 5.24:

* decoding: `transformers.image_utils.load_image(path)` (PIL open, `ImageOps.exif_transpose`,
  `convert("RGB")`), stored as an 8-bit RGB PNG;
* preprocessing: `PerceptionLMImageProcessor` on that PIL image; the fp32 pixel values are mapped
  back to the uint8 they came from (the script checks that the mapping is exact) and the tiles are
  stored stacked vertically in one RGB PNG (lossless and small);
* video: `PerceptionLMVideoProcessor` on the frames as ffmpeg decodes them (rgb24), with
  `num_frames`;
* the canvas table: the processor's own `_fit_image_to_canvas` / `_find_closest_aspect_ratio`.

It also prints, per case, whether handing the *path* to the processor (transformers then decodes
with torchvision.io instead of PIL) gives the same pixels, for the record.

Run: HF_HUB_OFFLINE=1 nice -n 19 /work/venv/bin/python Tests/Fixtures/make_image_fixtures.py
Requirements: Tests/Fixtures/image_requirements.txt (pinned), plus the ffmpeg command.
"""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

torch.set_num_threads(2)
from transformers.image_utils import load_image
from transformers.models.perception_lm.image_processing_perception_lm import PerceptionLMImageProcessor
from transformers.models.perception_lm.video_processing_perception_lm import PerceptionLMVideoProcessor

HERE = Path(__file__).resolve().parent
OUT = HERE / "images"
INPUTS = OUT / "inputs"
EXPECTED = OUT / "expected"
TINY_CONFIG = json.loads((HERE / "models/tiny-fp32-mha-tied/processor_config.json").read_text())
rng = np.random.default_rng(20250110)


# ---- small writers -------------------------------------------------------------------------

def png_bytes(width, height, bit_depth, color_type, rows, interlaced=False, extra_chunks=(), pixels=None):
    """A PNG written by hand (PIL cannot write 16-bit grey+alpha, interlaced or tRNS-on-grey files).
    rows: list of row byte strings (non-interlaced); for interlaced pass `pixels` (H, W, samples)
    array of the right dtype (big-endian for 16 bit)."""
    def chunk(tag, payload):
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)
    if interlaced:
        raw = b""
        for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
            sub = pixels[y0::dy, x0::dx]
            if sub.size == 0:
                continue
            raw += b"".join(b"\0" + r.tobytes() for r in sub)
    else:
        raw = b"".join(b"\0" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 1 if interlaced else 0)
    body = chunk(b"IHDR", ihdr) + b"".join(chunk(t, p) for t, p in extra_chunks) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def smooth_rgb(width, height, seed=0):
    """A smooth synthetic picture (compresses well, still exercises every filter tap)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / max(width, 1) * 6.3 + seed)
    g = 127.5 + 127.5 * np.cos(y / max(height, 1) * 4.1 + seed)
    b = (x * 7 + y * 3 + seed * 50) % 256
    img = np.stack([r, g, b], -1)
    img[(x // 5 + y // 5) % 7 == 0] = [250, 10, 30]  # sharp edges
    return np.clip(img, 0, 255).astype(np.uint8)


def save_pil(img, name, **kwargs):
    buf = io.BytesIO()
    img.save(buf, **kwargs)
    (INPUTS / name).write_bytes(buf.getvalue())
    return name


def write_stack_png(path, tiles_u8):
    """tiles_u8: (T, H, W, 3) uint8 → one RGB PNG of H·T rows."""
    t, h, w, _ = tiles_u8.shape
    Image.fromarray(tiles_u8.reshape(t * h, w, 3), "RGB").save(path, optimize=True)


# ---- reference runs --------------------------------------------------------------------------

def pixel_values_to_u8(values, mean_std_lut):
    """Maps fp32 pixel values back to uint8 and checks the map is exact."""
    u8 = np.clip(np.rint(values * 127.5 + 127.5), 0, 255).astype(np.uint8)
    if not np.array_equal(mean_std_lut[u8], values):
        raise SystemExit("pixel values are not an exact function of uint8 inputs")
    return u8


def normalisation_lut(processor):
    """What the processor makes of every uint8 value (all three channels equal)."""
    ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(1, 3, 1, 256).contiguous()
    out = processor.rescale_and_normalize(ramp, processor.do_rescale, processor.rescale_factor, processor.do_normalize,
                                          processor.image_mean, processor.image_std)
    return out[0, 0, 0].numpy().astype(np.float32)


def arrangement(processor, width, height, max_tiles):
    saved = processor.max_num_tiles
    processor.max_num_tiles = max_tiles
    try:
        if max_tiles <= 1:
            return (1, 1)
        a = processor._fit_image_to_canvas(img_width=width, img_height=height, tile_size=processor.tile_size)
        if a is None:
            a = processor._find_closest_aspect_ratio(img_width=width, img_height=height, tile_size=processor.tile_size)
        return tuple(int(v) for v in a)
    finally:
        processor.max_num_tiles = saved


def main():
    if shutil.which("ffmpeg") is None:
        raise SystemExit("the ffmpeg command is needed (apt-get install ffmpeg)")
    if OUT.exists():
        shutil.rmtree(OUT)
    INPUTS.mkdir(parents=True)
    EXPECTED.mkdir(parents=True)

    tiny = PerceptionLMImageProcessor(**{k: v for k, v in TINY_CONFIG["image_processor"].items() if k != "image_processor_type"})
    real = PerceptionLMImageProcessor()
    lut = normalisation_lut(tiny)

    cases = []  # (file, processor name, max tiles or None)

    # Photographs, downscaled (PIL LANCZOS) to keep the repository small.
    for name, arr in [("astronaut", skdata.astronaut()), ("coffee", skdata.coffee()), ("chelsea", skdata.chelsea()), ("rocket", skdata.rocket())]:
        img = Image.fromarray(arr)
        img = img.resize((img.width // 4, img.height // 4), Image.LANCZOS)
        cases.append((save_pil(img, f"{name}.png", format="PNG"), "tiny", None))
        cases.append((save_pil(img, f"{name}.jpg", format="JPEG", quality=90), "tiny", None))
    cases.append(("astronaut.jpg", "real", 1))
    cases.append(("coffee.png", "real", 2))
    cases.append(("rocket.jpg", "tiny", 1))
    cases.append(("chelsea.jpg", "tiny", 9))

    # Sizes.
    cases.append((save_pil(Image.fromarray(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)), "tiny_1x1.png", format="PNG"), "tiny", None))
    cases.append((save_pil(Image.fromarray(rng.integers(0, 256, (7, 13, 3), dtype=np.uint8)), "tiny_13x7.png", format="PNG"), "tiny", None))
    cases.append((save_pil(Image.fromarray(smooth_rgb(1, 2000)), "tall_1x2000.png", format="PNG"), "tiny", None))
    cases.append((save_pil(Image.fromarray(smooth_rgb(2000, 1)), "wide_2000x1.png", format="PNG"), "tiny", None))
    cases.append((save_pil(Image.fromarray(smooth_rgb(56, 56, 1)), "exact_56.png", format="PNG"), "tiny", None))
    cases.append((save_pil(Image.fromarray(smooth_rgb(448, 448, 2)), "exact_448.png", format="PNG"), "real", 1))

    # PNG colour types and depths.
    g16 = rng.integers(0, 65536, (9, 11)).astype(">u2")
    g16[:, :3] = rng.integers(0, 256, (9, 3))  # some values PIL's I;16 clip leaves alone
    (INPUTS / "grey16.png").write_bytes(png_bytes(11, 9, 16, 0, [r.tobytes() for r in g16]))
    cases.append(("grey16.png", "tiny", None))
    rgb16 = rng.integers(0, 65536, (9, 11, 3)).astype(">u2")
    (INPUTS / "rgb16.png").write_bytes(png_bytes(11, 9, 16, 2, [r.tobytes() for r in rgb16]))
    cases.append(("rgb16.png", "tiny", None))
    ga16 = rng.integers(0, 65536, (9, 11, 2)).astype(">u2")
    (INPUTS / "grey_alpha16.png").write_bytes(png_bytes(11, 9, 16, 4, [r.tobytes() for r in ga16]))
    cases.append(("grey_alpha16.png", "tiny", None))
    rgba16 = rng.integers(0, 65536, (9, 11, 4)).astype(">u2")
    (INPUTS / "rgba16.png").write_bytes(png_bytes(11, 9, 16, 6, [r.tobytes() for r in rgba16]))
    cases.append(("rgba16.png", "tiny", None))
    grey = smooth_rgb(40, 30, 3)[..., 0]
    cases.append((save_pil(Image.fromarray(grey, "L"), "grey.png", format="PNG"), "tiny", None))
    g2 = rng.integers(0, 4, (6, 16)).astype(np.uint8)
    packed = [bytes(int("".join(f"{v:02b}" for v in row[i:i + 4]), 2) for i in range(0, 16, 4)) for row in g2]
    (INPUTS / "grey2bit.png").write_bytes(png_bytes(16, 6, 2, 0, packed))
    cases.append(("grey2bit.png", "tiny", None))
    ga = np.stack([grey, (np.arange(40)[None, :].repeat(30, 0) * 6).astype(np.uint8)], -1)
    cases.append((save_pil(Image.fromarray(ga, "LA"), "grey_alpha.png", format="PNG"), "tiny", None))
    rgba = np.concatenate([smooth_rgb(40, 30, 4), np.full((30, 40, 1), 255, np.uint8)], -1)
    rgba[5:20, 8:30, 3] = 0          # fully transparent block with colour underneath
    rgba[20:, :, 3] = 128
    cases.append((save_pil(Image.fromarray(rgba, "RGBA"), "rgba_transparent.png", format="PNG"), "tiny", None))
    pal = Image.fromarray(smooth_rgb(40, 30, 5)).quantize(16)
    trns = bytes([0, 64, 128] + [255] * 13)
    cases.append((save_pil(pal, "palette_trns.png", format="PNG", transparency=trns), "tiny", None))
    inter = smooth_rgb(37, 29, 6)
    (INPUTS / "interlaced.png").write_bytes(png_bytes(37, 29, 8, 2, None, interlaced=True, pixels=inter))
    cases.append(("interlaced.png", "tiny", None))
    inter16 = rng.integers(0, 65536, (13, 10, 3)).astype(">u2")
    (INPUTS / "interlaced16.png").write_bytes(png_bytes(10, 13, 16, 2, None, interlaced=True, pixels=inter16))
    cases.append(("interlaced16.png", "tiny", None))

    # JPEG kinds.
    photo = Image.fromarray(skdata.chelsea()).resize((113, 75), Image.LANCZOS)
    cases.append((save_pil(photo.convert("L"), "grey.jpg", format="JPEG", quality=85), "tiny", None))
    cases.append((save_pil(photo, "progressive.jpg", format="JPEG", quality=85, progressive=True), "tiny", None))
    cases.append((save_pil(photo.convert("CMYK"), "cmyk.jpg", format="JPEG", quality=90), "tiny", None))
    cases.append((save_pil(photo, "subsampling444.jpg", format="JPEG", quality=95, subsampling=0), "tiny", None))
    cases.append((save_pil(photo, "subsampling422.jpg", format="JPEG", quality=95, subsampling=1), "tiny", None))
    try:
        cases.append((save_pil(photo, "restart.jpg", format="JPEG", quality=85, restart_marker_blocks=2), "tiny", None))
    except TypeError:
        print("this Pillow cannot write restart markers; restart.jpg skipped")
    raw = (INPUTS / "restart.jpg").read_bytes() if (INPUTS / "restart.jpg").exists() else b""
    if raw and b"\xff\xdd" not in raw:
        raise SystemExit("restart.jpg has no DRI marker")

    # EXIF orientations on a non-square JPEG, and one PNG with an eXIf chunk.
    base = Image.fromarray(smooth_rgb(24, 16, 7))
    for k in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = k
        cases.append((save_pil(base, f"exif_orientation_{k}.jpg", format="JPEG", quality=95, exif=exif.tobytes()), "tiny", None))
    exif = Image.Exif()
    exif[0x0112] = 6
    cases.append((save_pil(base, "exif_orientation_6.png", format="PNG", exif=exif.tobytes()), "tiny", None))

    manifest = {"generator": "make_image_fixtures.py", "transformers": __import__("transformers").__version__,
                "torch": torch.__version__, "pillow": Image.__version__,
                "normalisation": [float(v).hex() for v in lut], "cases": []}
    for file, which, max_tiles in cases:
        proc = tiny if which == "tiny" else real
        if max_tiles is not None:
            # A processor built with this max_num_tiles. (Passing max_num_tiles to the call is not
            # the same in transformers 5.24: the candidate grids still come from the instance's
            # max_num_tiles, the call value only decides whether to tile at all.)
            proc = PerceptionLMImageProcessor(**{**proc.to_dict(), "max_num_tiles": max_tiles})
        path = str(INPUTS / file)
        pil = load_image(path)
        decoded = np.array(pil)
        stem = file.replace(".", "_") + ("" if max_tiles is None else f"_{which}_max{max_tiles}")
        Image.fromarray(decoded, "RGB").save(EXPECTED / f"{stem}.decoded.png")
        kwargs = {}
        pv = proc(images=pil, return_tensors="pt", **kwargs)["pixel_values"][0].numpy()
        u8 = pixel_values_to_u8(pv, lut).transpose(0, 2, 3, 1)
        write_stack_png(EXPECTED / f"{stem}.tiles.png", np.ascontiguousarray(u8))
        limit = max_tiles if max_tiles is not None else proc.max_num_tiles
        nw, nh = arrangement(proc, pil.width, pil.height, limit)
        # The path-based loading (torchvision.io) for comparison only.
        try:
            pv_path = proc(images=path, return_tensors="pt", **kwargs)["pixel_values"][0].numpy()
            same = "same" if pv_path.shape == pv.shape and np.array_equal(pv_path, pv) else "differs"
        except Exception as e:  # noqa: BLE001 - only reported
            same = f"fails ({type(e).__name__})"
        print(f"{file:28s} {which:4s} max={limit:2d} decoded {pil.width}x{pil.height} T={pv.shape[0]} grid=({nw},{nh}) path-loading: {same}")
        manifest["cases"].append({"input": file, "processor": which, "max_tiles": max_tiles,
                                  "decoded": {"width": pil.width, "height": pil.height, "file": f"{stem}.decoded.png"},
                                  "tiles": {"count": int(pv.shape[0]), "size": int(pv.shape[-1]), "arrangement": [nw, nh],
                                            "file": f"{stem}.tiles.png"}})

    # Canvas table: sizes × max tiles through the processor's own selection code.
    sizes = [1, 13, 200, 300, 448, 449, 480, 640, 896, 900, 1080, 1344, 1920, 2000, 3000, 4000]
    table = []
    for max_tiles in [2, 4, 9, 16, 36]:
        for w in sizes:
            for h in sizes:
                table.append([w, h, max_tiles, *arrangement(real, w, h, max_tiles)])
    manifest["canvas_table"] = {"tile_size": 448, "rows": table}

    # Video: 12 frames made here, encoded with ffmpeg (H.264), decoded back with ffmpeg.
    frames_dir = INPUTS / "video_frames"
    frames_dir.mkdir()
    for i in range(12):
        Image.fromarray(np.roll(smooth_rgb(64, 48, 8), 3 * i, axis=1)).save(frames_dir / f"frame_{i:03d}.png")
    video = INPUTS / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-framerate", "6", "-i", str(frames_dir / "frame_%03d.png"),
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "18", str(video)], check=True)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(video), "-map", "0:v:0", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "pipe:1"], check=True, capture_output=True).stdout
    decoded_video = np.frombuffer(raw, np.uint8).reshape(-1, 48, 64, 3)
    vcfg = {k: v for k, v in TINY_CONFIG["video_processor"].items() if k != "video_processor_type"}
    vproc = PerceptionLMVideoProcessor(**vcfg)
    folder_frames = np.stack([np.array(load_image(str(p))) for p in sorted(frames_dir.iterdir())])
    manifest["videos"] = []
    for label, source, frames in [("folder", "video_frames", folder_frames), ("file", "clip.mp4", decoded_video)]:
        for n in [4, 5]:
            out = vproc(videos=[torch.from_numpy(frames).permute(0, 3, 1, 2)], do_sample_frames=True, num_frames=n,
                        return_tensors="pt")["pixel_values_videos"][0].numpy()
            u8 = pixel_values_to_u8(out, lut).transpose(0, 2, 3, 1)
            name = f"video_{label}_{n}.tiles.png"
            write_stack_png(EXPECTED / name, np.ascontiguousarray(u8))
            manifest["videos"].append({"kind": label, "input": source, "frames": n, "total": int(frames.shape[0]),
                                       "count": int(out.shape[0]), "size": int(out.shape[-1]), "file": name})
            print(f"video {label} n={n}: {out.shape}")

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(manifest['cases'])} image cases, {len(manifest['videos'])} video cases, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
