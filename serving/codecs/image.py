"""An uploaded picture of a handwritten digit -> the 8x8, 0..16 representation `load_digits` gives.

The rule (the inverse of how the UCI optdigits data were made: 32x32 bitmaps, 4x4 blocks, count of ink pixels):
1. decode with Pillow (PNG, JPEG, anything Pillow reads), honour EXIF rotation, flatten alpha onto white,
   convert to grayscale;
2. polarity from the border: if the border is lighter than mid-gray the ink is dark, so invert (ink bright);
3. crop to the bounding box of the ink (pixels above 25 % of the brightest), which ignores the margin;
4. scale the box, keeping its aspect ratio, so its longer side is 32 px, and centre it on a 32x32 black canvas
   (digits in the dataset span the full height and about 3/4 of the width);
5. the mean ink of each 4x4 block times 16, rounded: integers 0..16, as float32 [8, 8].
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from crossdeploy.errors import InvalidInput

Image.MAX_IMAGE_PIXELS = 40_000_000  # Pillow refuses decompression bombs above twice this
MAX_PIXELS = 4_000_000  # decoding runs on the event loop: a digit needs far less, a huge picture would stall it
SIDE, BLOCK = 32, 4


def digit_from_image(data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise InvalidInput(f"the image is {image.width}x{image.height}; at most {MAX_PIXELS // 1_000_000} megapixels are accepted")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float gray: scale, do not clip to 255
                values = np.asarray(image, dtype=np.float32)
                top = float(values.max()) or 1.0
                image = Image.fromarray((values / top * 255).astype(np.uint8))
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba)
            gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"the upload is not an image Pillow can decode: {str(exc).splitlines()[0][:200]}") from exc
    if gray.size == 0:
        raise InvalidInput("the image is empty")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = 1.0 - gray if np.median(border) > 0.5 else gray
    ink = np.clip(ink - np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])), 0.0, 1.0)
    if ink.max() < 0.1:
        raise InvalidInput("the image has no visible digit (no ink against the background)")
    rows, cols = np.nonzero(ink > 0.25 * ink.max())
    box = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = box.shape
    scale = SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    scaled = Image.fromarray((box * 255).astype(np.uint8)).resize(size, Image.Resampling.BOX)
    canvas = Image.new("L", (SIDE, SIDE), 0)
    canvas.paste(scaled, ((SIDE - size[0]) // 2, (SIDE - size[1]) // 2))
    pixels = np.asarray(canvas, dtype=np.float32) / 255.0
    blocks = pixels.reshape(SIDE // BLOCK, BLOCK, SIDE // BLOCK, BLOCK).mean(axis=(1, 3))
    return np.rint(blocks * 16).astype(np.float32)
