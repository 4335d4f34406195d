"""Type stubs for imgpipe's Rust core (crate `imgcore/`). Checked by `python -m mypy.stubtest`."""

from typing import Final, final

__version__: Final[str]
__all__ = [
    "CorruptImage",
    "ImageError",
    "ImageInfo",
    "ImageTooLarge",
    "Output",
    "Palette",
    "Processed",
    "RawRendition",
    "UnsupportedFormat",
    "__version__",
    "attention_window",
    "palette_from_pixels",
    "palette_thumbnail",
    "probe",
    "process",
    "render_raw",
]

class ImageError(ValueError):
    """Base of every image error; `code` is the PRODUCT.md error code."""

    code: str

class UnsupportedFormat(ImageError): ...  # code "unsupported_format"
class CorruptImage(ImageError): ...  # code "corrupt_image"
class ImageTooLarge(ImageError): ...  # code "image_too_large"

@final
class ImageInfo:
    @property
    def format(self) -> str: ...  # "jpeg" | "png" | "gif" | "webp" | "tiff"
    @property
    def width(self) -> int: ...  # as stored
    @property
    def height(self) -> int: ...
    @property
    def display_width(self) -> int: ...  # after EXIF orientation
    @property
    def display_height(self) -> int: ...
    @property
    def orientation(self) -> int: ...  # EXIF orientation 1..8 (1 when absent)
    @property
    def has_alpha(self) -> bool: ...
    @property
    def frame_count(self) -> int: ...
    @property
    def has_icc(self) -> bool: ...

@final
class Output:
    @property
    def name(self) -> str: ...  # "w640", "1920x1080", "1080x1920-cover"
    @property
    def format(self) -> str: ...  # "jpeg" | "webp"
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def data(self) -> bytes: ...

@final
class RawRendition:
    @property
    def name(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def channels(self) -> int: ...  # 3 (RGB) or 4 (RGBA, straight alpha)
    @property
    def pixels(self) -> bytes: ...

@final
class Palette:
    # ("#rrggbb", share), share desc; shares of the visible pixels, each weighted by its alpha
    @property
    def colors(self) -> list[tuple[str, float]]: ...
    # "#rrggbb": material-color-utilities' seed, from the fully opaque pixels as upstream
    @property
    def seed(self) -> str: ...
    # 1 to 4 "#rrggbb", Score's order (upstream `Score.score(..., desired=4)`); [0] == seed
    @property
    def seed_candidates(self) -> list[str]: ...
    @property
    def thumbhash(self) -> str: ...  # standard base64

@final
class Processed:
    @property
    def info(self) -> ImageInfo: ...
    @property
    def outputs(self) -> list[Output]: ...
    @property
    def palette(self) -> Palette | None: ...
    @property
    def timings(self) -> dict[str, float]: ...  # seconds per stage, summed over threads
    @property
    def rendered(self) -> list[RawRendition]: ...  # with keep_pixels=True, else []

# A rendition spec: (width, height or None, cover). (640, None, False) = width 640;
# (1920, 1080, False) = fit inside the box; (1080, 1920, True) = fill the box and crop (around
# `focus` when given, else as `crop` says: "attention", the region of highest saliency as
# libvips' smartcrop finds it, or "centre").
_RenditionSpec = tuple[int, int | None, bool]

def probe(data: bytes, *, max_pixels: int = 100_000_000) -> ImageInfo: ...
def process(
    data: bytes,
    renditions: list[_RenditionSpec],
    *,
    palette: bool = True,
    max_pixels: int = 100_000_000,
    jpeg_quality: int = 82,
    webp_quality: float = 80.0,
    webp_method: int = 4,
    formats: list[str] | None = None,  # None: ["jpeg", "webp"]
    threads: int = 1,
    focus: tuple[float, float] | None = None,  # cover crops around it (display fractions)
    crop: str = "attention",  # "attention" | "centre"; ignored when focus is given
    # Pixels decoded outside the core (HEIF, AVIF) from `data`: (buffer, width, height,
    # channels 3|4, stride in bytes, oriented: the container's irot/imir already applied).
    decoded: tuple[bytes | bytearray | memoryview, int, int, int, int, bool] | None = None,
    keep_pixels: bool = False,  # also return each rendition's pixels in `rendered`
) -> Processed: ...

# The resized pixels before encoding; cover crops centred.
def render_raw(
    data: bytes,
    renditions: list[_RenditionSpec],
    *,
    max_pixels: int = 100_000_000,
    decoded: tuple[bytes | bytearray | memoryview, int, int, int, int, bool] | None = None,
) -> list[RawRendition]: ...
def palette_from_pixels(pixels: bytes, width: int, height: int, channels: int) -> Palette: ...

# The thumbnail `process` computes the palette from: the oriented sRGB image box-averaged,
# then Lanczos3 to fit 128x128; name "palette".
def palette_thumbnail(
    data: bytes,
    *,
    max_pixels: int = 100_000_000,
    decoded: tuple[bytes | bytearray | memoryview, int, int, int, int, bool] | None = None,
) -> RawRendition: ...

# The window `process` crops for a `width` x `height` cover rendition placed by attention:
# (left, top, width, height) in display pixels of the source.
def attention_window(
    data: bytes,
    width: int,
    height: int,
    *,
    max_pixels: int = 100_000_000,
    decoded: tuple[bytes | bytearray | memoryview, int, int, int, int, bool] | None = None,
) -> tuple[float, float, float, float]: ...
