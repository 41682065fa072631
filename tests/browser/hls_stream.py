"""A short HLS stream made at test time, as a shop's encoder would write it into
livesell's streams folder: a moving test pattern (ffmpeg's `testsrc2`), H.264,
cut into segments of one second by ffmpeg's own HLS muxer, all through PyAV
(the `av` package, whose wheel carries its ffmpeg libraries: nothing to install
from the system). Segments are MPEG-TS or fragmented MP4 (with its init section,
#EXT-X-MAP); the playlist is written here, so a test decides when the stream is
live (no #EXT-X-ENDLIST) and when it ended.

H.264 baseline because every HLS player takes it: Debian's chromium decodes it
(MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E"') and its built-in
HLS player), hls.js transmuxes it from MPEG-TS, Safari plays it natively. No
audio: nothing here listens, and a muted page plays either way."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av

FPS = 25
WIDTH, HEIGHT = 320, 180


@dataclass(frozen=True)
class Segments:
    """The segments encoded into a folder, as playlist lines (an #EXT-X-MAP line
    first for fMP4, then #EXTINF and URI pairs)."""

    lines: tuple[str, ...]
    target_s: int

    def playlist(self, ended: bool) -> str:
        """A media playlist of every segment: live (the player keeps asking for more)
        until `ended` adds #EXT-X-ENDLIST."""
        head = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{self.target_s}",
                "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-INDEPENDENT-SEGMENTS"]
        tail = ["#EXT-X-ENDLIST"] if ended else []
        return "\n".join([*head, *self.lines, *tail]) + "\n"


def encode_segments(folder: Path, seconds: int, fmp4: bool) -> Segments:
    """Encode `seconds` of the test pattern into one-second segments in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = "m4s" if fmp4 else "ts"
    options = {"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod",
               "hls_segment_type": "fmp4" if fmp4 else "mpegts",
               "hls_segment_filename": str(folder / f"seg%03d.{ext}")}
    if fmp4:
        options["hls_fmp4_init_filename"] = "init.mp4"  # written beside the playlist
    with tempfile.TemporaryDirectory() as scratch:
        # ffmpeg's own playlist goes to scratch: only its segment lines are kept.
        written = Path(scratch) / "encoder.m3u8"
        source = av.open(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={seconds}",
                         format="lavfi")
        output = av.open(str(written), mode="w", format="hls", options=options)
        try:
            stream = output.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            # A key frame at every second, so each segment starts with one and lasts
            # exactly a second; one thread, as the machine is shared with the server.
            stream.options = {"profile": "baseline", "g": str(FPS), "keyint_min": str(FPS),
                              "sc_threshold": "0", "preset": "veryfast", "threads": "1"}
            for frame in source.decode(video=0):
                picture = frame.reformat(format="yuv420p")
                picture.pts = None
                for packet in stream.encode(picture):
                    output.mux(packet)
            for packet in stream.encode(None):
                output.mux(packet)
        finally:
            output.close()
            source.close()
        if fmp4:
            os.replace(Path(scratch) / "init.mp4", folder / "init.mp4")
        lines = [line for line in written.read_text().splitlines()
                 if line.startswith(("#EXTINF", "#EXT-X-MAP")) or
                 (line and not line.startswith("#"))]
    return Segments(tuple(lines), 1)


def write_playlist(folder: Path, segments: Segments, ended: bool,
                   name: str = "index.m3u8") -> None:
    """Write the playlist as an encoder does: whole, then renamed into place, so a
    player never reads half of one."""
    temporary = folder / f"{name}.tmp"
    temporary.write_text(segments.playlist(ended))
    os.replace(temporary, folder / name)
