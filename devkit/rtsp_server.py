"""A real RTSP camera on loopback: GStreamer's RTSP server streaming H.264 of a moving test pattern.

Run with Debian's /usr/bin/python3 (python3-gi + gir1.2-gst-rtsp-server-1.0):
`rtsp_server.py PORT [PATH...] [--images DIR --fps N]`. Prints "ready" once listening; every PATH (default /cam)
serves the same live stream: the test pattern at 640x480 and 15 fps, or DIR's JPEGs (00000.jpg, 00001.jpg, ...)
looped at N fps.
"""

import argparse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=480,framerate=15/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 )"
)


def images_launch(folder: str, fps: int) -> str:
    """JPEGs looped at `fps`; `identity sync=true` paces them on the clock like a camera's sensor."""
    return (
        f'( multifilesrc location="{folder}/%05d.jpg" loop=true caps=image/jpeg,framerate={fps}/1 '
        "! jpegdec ! videoconvert ! video/x-raw,format=I420 ! identity sync=true "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! rtph264pay name=pay0 pt=96 )"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port")
    p.add_argument("paths", nargs="*", default=["/cam"])
    p.add_argument("--images", help="folder of 00000.jpg, 00001.jpg, ... to loop instead of the test pattern")
    p.add_argument("--fps", type=int, default=15, help="frame rate of --images")
    args = p.parse_args()
    launch = images_launch(args.images, args.fps) if args.images else LAUNCH
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(args.port)
    for path in args.paths:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on port {args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
